"""The viewer's HTTP app (Starlette): the page, its static files, and the JSON API under it.

Every route only parses its input and calls an `Explorer` method (or, for the evidence panels,
a function of `web/evidence.py` over the Explorer) in a worker thread; they do the work. Errors are JSON `{"error": "<one sentence>"}` with a 4xx status:

    400  a parameter or body that is wrong (not JSON, wrong type, out of range, unknown kind)
    404  a text id, file, layer, unit or route that does not exist
    413  a text or request over the size limits

The API is documented in docs/viewer.md; tests/test_web_api.py calls every route.
"""
from __future__ import annotations

import json
from importlib import resources

from starlette.applications import Starlette
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from unrolled.errors import UserError
from unrolled.web import evidence
from unrolled.web.explorer import MAX_SAMPLE, Explorer, NotFound, TooLarge
from unrolled.web.sampling import sample_pieces

STATIC = resources.files("unrolled.web") / "static"
# The page may load only what this server serves: no CDN, no inline script, nothing remote.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
MEDIA = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
         ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png"}
MAX_BODY_EXTRA = 64 * 1024  # bytes of JSON a request may carry beyond the text itself


class BadRequest(UserError):
    """A malformed request (HTTP 400)."""


def status_of(e: UserError) -> int:
    return 404 if isinstance(e, NotFound) else 413 if isinstance(e, TooLarge) else 400


# --- parsing ---------------------------------------------------------------------------------------
def query_int(request: Request, name: str, default=..., low: int | None = None, high: int | None = None):
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        if default is ...:
            raise BadRequest(f"the query parameter {name} is missing; give it as ?{name}=N")
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"the query parameter {name} must be a whole number, not {raw[:40]!r}") from None
    if (low is not None and value < low) or (high is not None and value > high):
        raise BadRequest(f"the query parameter {name} must be between {low} and {high}, not {value}")
    return value


def query_float(request: Request, name: str, default: float) -> float:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise BadRequest(f"the query parameter {name} must be a number, not {raw[:40]!r}") from None


def query_str(request: Request, name: str, default=...) -> str:
    raw = request.query_params.get(name)
    if raw is None:
        if default is ...:
            raise BadRequest(f"the query parameter {name} is missing")
        return default
    return raw


def query_units(request: Request) -> list[int]:
    raw = query_str(request, "units")
    try:
        return [int(u) for u in raw.split(",") if u.strip()]
    except ValueError:
        raise BadRequest(f"units must be whole numbers separated by commas (units=3,17), not {raw[:40]!r}") from None


async def json_body(request: Request, limit: int) -> dict:
    """The request's JSON object, read with a size cap (a huge body never sits in memory)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"the request body has {int(declared):,} bytes; at most {limit:,}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise TooLarge(f"the request body is over {limit:,} bytes")
    try:
        obj = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadRequest(f"the request body is not valid JSON ({e}); send a JSON object") from None
    except RecursionError:  # [[[[...]]]] deeper than Python's parser goes
        raise BadRequest("the request body nests JSON too deeply; send a flat JSON object") from None
    if not isinstance(obj, dict):
        raise BadRequest("the request body must be a JSON object, like {\"text\": \"...\"}")
    return obj


def field(obj: dict, name: str, kind, default=...):
    if name not in obj or obj[name] is None:
        if default is ...:
            raise BadRequest(f"the JSON body needs the field {name!r}")
        return default
    value = obj[name]
    ok = isinstance(value, kind) and not (isinstance(value, bool) and kind is not bool)
    if not ok:
        want = {int: "a whole number", float: "a number", (int, float): "a number", str: "a string"}.get(kind, str(kind))
        raise BadRequest(f"the field {name!r} must be {want}")
    return value


# --- the app ---------------------------------------------------------------------------------------
def create_app(explorer: Explorer, allowed_hosts: list[str] | None = None) -> Starlette:
    """The Starlette app over `explorer`. `allowed_hosts` (e.g. 127.0.0.1, localhost) refuses
    requests for other Host names, which stops a web page elsewhere from reaching this server
    through a DNS name rebound to 127.0.0.1; None allows any."""
    body_limit = explorer.max_chars * 4 + MAX_BODY_EXTRA  # UTF-8 needs up to 4 bytes a character
    routes = (page_routes() + text_routes(explorer, body_limit) + unit_routes(explorer) + sample_routes(explorer)
              + evidence_routes(explorer))
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)] if allowed_hosts else []
    return Starlette(routes=routes, middleware=middleware,
                     exception_handlers={UserError: user_error, HTTPException: http_error, Exception: server_error})


def page_routes() -> list[Route]:
    """The page and its static files."""
    static_files = {p.name: p for p in STATIC.iterdir() if p.is_file()}

    def static(name: str) -> Response:
        # Only the files shipped in the package, looked up by exact name: "../x" is not a name.
        f = static_files.get(name)
        if f is None:
            raise NotFound(f"no static file {name[:80]!r}; the page's files are {', '.join(sorted(static_files))}")
        suffix = "." + name.rsplit(".", 1)[-1]
        return Response(f.read_bytes(), media_type=MEDIA.get(suffix, "application/octet-stream"),
                        headers={"Content-Security-Policy": CSP, "Cache-Control": "no-cache"})

    async def index(request: Request):
        return static("index.html")

    async def static_file(request: Request):
        return static(request.path_params["name"])

    return [Route("/", index), Route("/static/{name:path}", static_file)]


def text_routes(explorer: Explorer, body_limit: int) -> list[Route]:
    """The model's description, the server's files, and the texts the page is shown."""

    async def info(request: Request):
        return JSONResponse(explorer.info())

    async def files(request: Request):
        return JSONResponse({"files": explorer.list_files()})

    async def texts(request: Request):
        return JSONResponse({"texts": explorer.texts()})

    async def text_get(request: Request):
        return JSONResponse(explorer.get_text(query_str(request, "id")))

    async def text_post(request: Request):
        obj = await json_body(request, body_limit)
        if "file" in obj:
            return JSONResponse(await run_in_threadpool(explorer.add_file, field(obj, "file", str)))
        text = field(obj, "text", str)
        name = field(obj, "name", str, "pasted text")
        return JSONResponse(await run_in_threadpool(explorer.add_text, text, name))

    return [Route("/api/info", info), Route("/api/files", files), Route("/api/texts", texts),
            Route("/api/text", text_get, methods=["GET"]), Route("/api/text", text_post, methods=["POST"])]


def unit_routes(explorer: Explorer) -> list[Route]:
    """What the model computes over a text: activations, predictions, features and the units
    that track them, select and match, gate saturation."""

    async def activations(request: Request):
        args = (query_str(request, "text"), query_int(request, "layer", 0), query_str(request, "kind", "h"),
                query_units(request))
        return JSONResponse(await run_in_threadpool(explorer.activations, *args))

    async def predictions(request: Request):
        start = query_int(request, "start")
        args = (query_str(request, "text"), start, query_int(request, "end", start + 1), query_int(request, "k", 5))
        return JSONResponse(await run_in_threadpool(explorer.predictions, *args))

    async def bits(request: Request):
        return JSONResponse(await run_in_threadpool(explorer.bits_per_char, query_str(request, "text")))

    async def feature_list(request: Request):
        return JSONResponse({"features": explorer.feature_list()})

    async def feature(request: Request):
        args = (query_str(request, "text"), query_str(request, "name"))
        return JSONResponse(await run_in_threadpool(explorer.feature, *args))

    async def units(request: Request):
        args = (query_str(request, "text"), query_str(request, "feature"), query_str(request, "kind", "h"),
                query_int(request, "layer", None), query_int(request, "top", 20))
        return JSONResponse(await run_in_threadpool(explorer.ranked_units, *args))

    async def select(request: Request):
        obj = await json_body(request, MAX_BODY_EXTRA)
        args = (field(obj, "text", str), field(obj, "start", int), field(obj, "end", int),
                float(field(obj, "threshold", (int, float), 0.3)), field(obj, "kind", str, "h"),
                field(obj, "layer", int, 0), field(obj, "pad", int, 1), field(obj, "top", int, 50))
        return JSONResponse(await run_in_threadpool(explorer.select, *args))

    async def saturation(request: Request):
        return JSONResponse(await run_in_threadpool(explorer.saturation, query_str(request, "text")))

    return [Route("/api/activations", activations), Route("/api/predictions", predictions),
            Route("/api/bits", bits), Route("/api/features", feature_list), Route("/api/feature", feature),
            Route("/api/units", units), Route("/api/select", select, methods=["POST"]),
            Route("/api/saturation", saturation)]


def sample_routes(explorer: Explorer) -> list[Route]:
    """Text sampled from the model, streamed to the page as server-sent events."""

    async def sample(request: Request):
        top_k = query_int(request, "top_k", None)
        seed = query_int(request, "seed", None)
        held = evidence.clamps(explorer, request.query_params.getlist("clamp"))  # ?clamp=c1:97=3&clamp=...
        pieces = await run_in_threadpool(
            sample_pieces, explorer.model, query_str(request, "prime", ""), query_int(request, "length", 200),
            query_float(request, "temperature", 1.0), top_k, seed, MAX_SAMPLE, held)

        async def events():
            n = 0
            # The generator runs in a worker thread one piece at a time, so a slow model never
            # blocks other requests; when the client goes away Starlette stops iterating.
            async for piece in iterate_in_threadpool(pieces):
                n += len(piece)
                yield f"data: {json.dumps({'text': piece})}\n\n"
            yield f"event: end\ndata: {json.dumps({'length': n})}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return [Route("/api/sample", sample)]


def evidence_routes(explorer: Explorer) -> list[Route]:
    """The evidence panels: the attributions of one prediction, a linear probe with its control."""

    async def attribute(request: Request):
        args = (query_str(request, "text"), query_int(request, "at"), query_int(request, "window", 100))
        return JSONResponse(await run_in_threadpool(evidence.attribution, explorer, *args))

    async def probe(request: Request):
        args = (query_str(request, "text"), query_str(request, "feature"), query_int(request, "layer", None))
        return JSONResponse(await run_in_threadpool(evidence.probe, explorer, *args))

    return [Route("/api/attribute", attribute), Route("/api/probe", probe)]


# --- errors as one JSON sentence -------------------------------------------------------------------
async def user_error(request: Request, exc: UserError):
    return JSONResponse({"error": str(exc)}, status_code=status_of(exc))


async def http_error(request: Request, exc: HTTPException):
    message = {404: f"no such page or API route: {request.url.path[:100]}; the API is listed in docs/viewer.md",
               405: f"{request.method} is not allowed on {request.url.path[:100]}"}.get(exc.status_code, exc.detail)
    return JSONResponse({"error": message}, status_code=exc.status_code)


async def server_error(request: Request, exc: Exception):
    # A bug of ours, not the user's: still one JSON sentence, never a traceback page.
    return JSONResponse({"error": f"internal error ({type(exc).__name__}); please report it"}, status_code=500)
