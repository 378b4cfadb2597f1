"""API errors in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""
import json

from starlette.responses import JSONResponse as _JSONResponse


class JSONResponse(_JSONResponse):
    """Compact UTF-8 JSON; text that cannot be UTF-8 (lone surrogates from a request) is
    escaped instead of failing."""

    def render(self, content):
        try:
            return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        except UnicodeEncodeError:
            return json.dumps(content, separators=(",", ":")).encode("ascii")

# HTTP status -> OpenAI's error type
_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 403: "invalid_request_error",
          404: "invalid_request_error", 405: "invalid_request_error", 413: "invalid_request_error",
          415: "invalid_request_error", 503: "server_error", 500: "server_error"}


class APIError(Exception):
    """An error a handler reports to the client (never a bug: those become 500s)."""

    def __init__(self, status, message, param=None, code=None, headers=None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers

    def body(self):
        return error_body(self.status, self.message, self.param, self.code)

    def response(self):
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def error_body(status, message, param=None, code=None):
    return {"error": {"message": message, "type": _TYPES.get(status, "invalid_request_error"),
                      "param": param, "code": code}}


def bad_request(message, param=None, code=None):
    return APIError(400, message, param, code)


def too_large(message, param=None):
    return APIError(413, message, param, "request_too_large")
