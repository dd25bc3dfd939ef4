"""Every error the API answers is JSON of one shape: `{"error": "<one sentence>", "status": <int>}`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse

if TYPE_CHECKING:
    from fastapi import FastAPI, Request


class ApiError(Exception):
    """An answer other than success: its HTTP status and a sentence for the person behind the client."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


def install_handlers(app: FastAPI) -> None:
    """FastAPI's and Starlette's own errors (unknown route, bad method, bad parameter) in the same shape."""
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    async def api_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, ApiError)
        return error_response(error.status, error.message, error.headers)

    async def http_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, HTTPException)
        messages = {404: f"{request.url.path}: no such route", 405: f"{request.method} is not allowed here"}
        message = messages.get(error.status_code, str(error.detail))
        return error_response(error.status_code, message, getattr(error, "headers", None))

    async def validation_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        return error_response(422, _first_problem(error.errors()))

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)


def _first_problem(errors: Any) -> str:
    for problem in errors:
        where = ".".join(str(part) for part in problem.get("loc", ()) if part not in ("query", "path", "body"))
        return f"{where or 'request'}: {problem.get('msg', 'invalid')}"
    return "invalid request"
