"""The web chat: GET / is pygemma/web/index.html, /web/<file> the other files of that folder
(shipped as package data).  Without the folder, / says so."""
import os

from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, HTMLResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

WEB_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "web")

MISSING = """<!doctype html><meta charset="utf-8"><title>pygemma</title>
<h1>pygemma server</h1>
<p>The web chat is not installed (no pygemma/web/index.html).  The OpenAI-compatible API is
at <code>/v1/chat/completions</code>, <code>/v1/completions</code> and <code>/v1/models</code>.</p>
"""


async def index(request):
    path = os.path.join(WEB_DIR, "index.html")
    if os.path.isfile(path):
        return FileResponse(path, media_type="text/html; charset=utf-8",
                            headers={"cache-control": "no-cache"})
    return HTMLResponse(MISSING)


class _WebFiles(StaticFiles):
    async def check_config(self):
        if not os.path.isdir(WEB_DIR):
            raise HTTPException(404)             # not installed: a 404, not a server error
        await super().check_config()


def routes():
    return [Route("/", index, methods=["GET", "HEAD"]),
            Mount("/web", app=_WebFiles(directory=WEB_DIR, check_dir=False), name="web")]
