"""An HTTP JSON server over an exported model (serving/exported.py): the standard library's
ThreadingHTTPServer, no model code.

  POST /recommend {"history": [original ids, oldest first], "k": 10}
       -> {"items": [...], "scores": [...], "titles": [...]}   (titles null without a title file)
  POST /recommend {"histories": [[...], ...], "k": 10}
       -> {"items": [[...], ...], "scores": [[...], ...], "titles": [[...], ...]}
  GET  /health -> {"status": "ok", "model": ..., "k": K, "num_items": ...}
  GET  /user_features -> {"user_features": placement or null, "features": [{"name": ...,
       "kind": "categorical", "values": [...]} or {"name": ..., "kind": "numeric" | "dense",
       "dim": ...}, ...]}   (what a new user's "user" object may hold; [] without user features)

A model with a time bias (an HSTU; /health's "time_query" is not null) also takes "times", each
history item's time in seconds (a list, or a list of lists with "histories"), and a "target"
one "query_time", the time the list is for (a number, or a list; default: the last item's).
A model with user features (/health's "user_features" is not null) takes "user", the id of a
user of the run's dataset whose features it reads, an object of a new user's raw feature values
({"gender": "F", "age": "25-34"}: users.json's "features" names them and their vocabularies), or
null for one without (the default; a list of such with "histories"). Any other model takes
"user" null only, so one client serves both.

k is optional (default: the exported K, the most it may be). A bad request gets a 4xx and an
internal failure a 500, each with one line {"error": "..."}; neither stops the server.
"""

from __future__ import annotations

import json
import sys
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from transrec_jax.serving.exported import ExportedModel, RequestError

MAX_BODY = 1 << 20  # bytes of a request body: ~100k ids
MAX_HISTORIES = 1024  # per request: a larger batch would hold the model for seconds
TIMEOUT_S = 30  # a client that stops sending mid-request frees its thread after this


_ROUTES = "GET /health, GET /user_features, POST /recommend"


class _BadRequest(Exception):
    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status = status


def make_server(model: ExportedModel, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    """A server (not yet serving: call serve_forever) answering from `model`; port 0 picks a
    free port (server.server_address)."""
    return _Server((host, port), type("Handler", (_Handler,), {"model": model}))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # socketserver's 5 resets connections of a burst of clients


class _Handler(BaseHTTPRequestHandler):
    model: ExportedModel
    protocol_version = "HTTP/1.1"  # keep-alive: a client's requests reuse one connection
    # Headers and body go out in two writes: with Nagle's algorithm the body would wait for the
    # client's delayed ACK of the headers, tens of milliseconds a response.
    disable_nagle_algorithm = True
    timeout = TIMEOUT_S

    def do_GET(self):
        self._answer({"/health": self._health, "/user_features": self._user_features}.get(self.path))

    def do_POST(self):
        self._answer(self._recommend if self.path == "/recommend" else None)

    def __getattr__(self, name):
        """Any other method (http.server looks up do_<METHOD>): 405, not http.server's 501."""
        if name.startswith("do_"):
            return self._not_allowed
        raise AttributeError(name)

    def _not_allowed(self):
        self.close_connection = True  # (a body it may have sent is not read)
        self._send(HTTPStatus.METHOD_NOT_ALLOWED,
                   {"error": f"method {self.command} not allowed: {_ROUTES}"})

    def send_error(self, code, message=None, explain=None):
        """http.server's own errors (a malformed request line, headers too long) as JSON too."""
        self.close_connection = True
        self._send(HTTPStatus(code), {"error": message or HTTPStatus(code).phrase})

    def log_message(self, format, *args):
        """Quiet: no line per request."""

    def _answer(self, route):
        try:
            if route is None:
                raise _BadRequest(HTTPStatus.NOT_FOUND, f"no {self.command} {self.path}: {_ROUTES}")
            self._send(HTTPStatus.OK, route())
        except _BadRequest as e:
            self._send(e.status, {"error": str(e)})
        except RequestError as e:
            self._send(HTTPStatus.BAD_REQUEST, {"error": str(e)})
        except TimeoutError:
            self.close_connection = True
            self._send(HTTPStatus.REQUEST_TIMEOUT, {"error": f"request body not received in "
                                                             f"{TIMEOUT_S} s"})
        except Exception as e:  # a bug, not the client's: logged, answered, the server goes on
            traceback.print_exc(file=sys.stderr)
            self.close_connection = True
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"internal error: {type(e).__name__}"})

    def _health(self):
        m = self.model
        return {"status": "ok", "model": m.manifest.get("model"), "k": m.k, "num_items": m.num_items,
                "time_query": m.time_query, "user_features": m.user_features}

    def _user_features(self):
        """What a new user's "user" object may hold: each feature's name, kind and values."""
        return {"user_features": self.model.user_features,
                "features": self.model.user_feature_values()}

    def _recommend(self):
        request = self._json_body()
        unknown = sorted(set(request) - {"history", "histories", "k", "times", "query_time", "user"})
        if unknown:
            raise _BadRequest(HTTPStatus.BAD_REQUEST, f"unknown fields {unknown}: expected "
                                                      "'history' or 'histories', 'k', 'times', "
                                                      "'query_time' and 'user'")
        if ("history" in request) == ("histories" in request):
            raise _BadRequest(HTTPStatus.BAD_REQUEST, "expected one of 'history' (a list of item "
                                                      "ids) and 'histories' (a list of such lists)")
        batched = "histories" in request
        histories = request["histories"] if batched else [request["history"]]
        if not isinstance(histories, list) or not all(_is_ids(h) for h in histories):
            field = "histories: a list of lists" if batched else "history: a list"
            raise _BadRequest(HTTPStatus.BAD_REQUEST, f"expected {field} of item ids (strings or "
                                                      "integers)")
        if len(histories) > MAX_HISTORIES:
            raise _BadRequest(HTTPStatus.BAD_REQUEST, f"{len(histories):,} histories: at most "
                                                      f"{MAX_HISTORIES:,} per request")
        times, query_time = _times(request, batched)
        users = _users(request, batched)
        k = request.get("k", self.model.k)
        numbers = self.model.user_numbers(users, len(histories))
        internal, scores = self.model.top_k([self.model.index(h) for h in histories], k, times,
                                            query_time, numbers)
        ids, titles = self.model.ids, self.model.titles
        answer = [{"items": [ids[i] for i in row], "scores": row_scores,
                   "titles": None if titles is None else [titles[i] for i in row]}
                  for row, row_scores in zip(internal.tolist(), scores.tolist())]
        return {key: [a[key] for a in answer] for key in answer[0]} if batched else answer[0]

    def _json_body(self):
        length = self.headers.get("Content-Length")
        if length is None:
            self.close_connection = True
            raise _BadRequest(HTTPStatus.LENGTH_REQUIRED, "a Content-Length header is required")
        if not length.isdigit():
            self.close_connection = True
            raise _BadRequest(HTTPStatus.BAD_REQUEST, f"Content-Length {length!r}: expected bytes")
        if int(length) > MAX_BODY:
            self.close_connection = True  # the body is left unread
            raise _BadRequest(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                              f"body of {int(length):,} bytes: at most {MAX_BODY:,}")
        try:
            request = json.loads(self.rfile.read(int(length)))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise _BadRequest(HTTPStatus.BAD_REQUEST, f"body is not JSON: {e}") from None
        except RecursionError:
            raise _BadRequest(HTTPStatus.BAD_REQUEST, "body is JSON nested too deep") from None
        if not isinstance(request, dict):
            raise _BadRequest(HTTPStatus.BAD_REQUEST, "expected a JSON object")
        return request

    def _send(self, status: HTTPStatus, body: dict):
        data = (json.dumps(body) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


def _times(request: dict, batched: bool):
    """The request's times and query times as the loader takes them (one list per history), or
    None where it gives none."""
    times, query_time = request.get("times"), request.get("query_time")
    if times is not None:
        rows = times if batched else [times]
        if not isinstance(times, list) or not all(isinstance(t, list) for t in rows):
            each = "a list of lists, one per history" if batched else "a list"
            raise _BadRequest(HTTPStatus.BAD_REQUEST, f"expected times: {each} of seconds")
        times = rows
    if query_time is not None:
        if batched != isinstance(query_time, list):
            each = "a list of seconds, one per history" if batched else "seconds"
            raise _BadRequest(HTTPStatus.BAD_REQUEST, f"expected query_time: {each}")
        query_time = query_time if batched else [query_time]
    return times, query_time


def _users(request: dict, batched: bool):
    """The request's user ids (one per history, None for a user without features) as the
    loader takes them, or None where it gives none."""
    if "user" not in request:
        return None
    user = request["user"]
    if batched:
        if not isinstance(user, list) or not all(_is_user(u) for u in user):
            raise _BadRequest(HTTPStatus.BAD_REQUEST, "expected user: a list of user ids (or "
                                                      "objects of features, or null), one per "
                                                      "history")
        return user
    if not _is_user(user):
        raise _BadRequest(HTTPStatus.BAD_REQUEST, "expected user: a user id (a string or an "
                                                  "integer), an object of features or null")
    return [user]


def _is_user(value) -> bool:
    return value is None or _is_id(value) or isinstance(value, dict)


def _is_id(value) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def _is_ids(value) -> bool:
    return isinstance(value, list) and all(_is_id(i) for i in value)
