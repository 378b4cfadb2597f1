"""The OpenAI-compatible HTTP server (`pygemma -m MODEL --server`; needs the `server` extra:
Starlette and uvicorn).

Modules, one job each: app (routes, error handlers, lifespan), generate (the two generation
endpoints), validate (request bodies -> generation requests), chat_prompt (messages -> prompt),
scheduler (the slots and the thread that runs the model), streaming (jobs <-> responses, SSE,
disconnects), middleware (API key, access log), errors (OpenAI's error shape), web (the web
chat's files), run (socket, uvicorn, browser).
"""
from .app import ServerState, create_app  # noqa: F401
from .run import Server  # noqa: F401
