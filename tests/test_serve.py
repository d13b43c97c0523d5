"""The HTTP server over an exported model: a good request answers as the loader does; every bad
one gets a 4xx (a failure inside, a 500) with one line of JSON, and the server goes on."""

import http.client
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from transrec_jax.serving import export, exported, http as serving_http

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_ITEMS, K, MAX_LEN = 20, 5, 4


def _toy_top_k(history, exclude, shift=0):
    """Scores any item id from the history alone (no model), moved by `shift` [b] (the toys
    below: a time gap, a user): (items, scores) of the best K."""
    items = jnp.arange(NUM_ITEMS + 1)
    scores = ((history[:, -1:] * 7 + items * 3 + jnp.reshape(shift, (-1, 1))) % (NUM_ITEMS + 1))
    excluded = (exclude[:, :, None] == items).any(axis=1) | (items == 0)
    scores, top = jax.lax.top_k(jnp.where(excluded, -jnp.inf, scores.astype(jnp.float32)), K)
    return top.astype(jnp.int32), scores


def _serve(tmp_path_factory, top_k, about, **artifact):
    """Export the toy `top_k` (serving needs an artifact, not a trained model:
    tests/test_export.py exports one), load it, warm it up (as `serve` does: every batch size)
    and serve it on a free port: yields (model, port, directory)."""
    output = str(tmp_path_factory.mktemp("serve") / "export")
    export.write_artifact(output, top_k, ids=[f"m{i}" for i in range(1, NUM_ITEMS + 1)],
                          max_len=MAX_LEN, k=K, platforms=("cpu",), about={"model": "toy", **about},
                          **{"titles": None, **artifact})
    model = exported.load(output)
    model.warm_up()
    server = serving_http.make_server(model, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield model, server.server_address[1], output
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The toy, with titles."""
    yield from _serve(tmp_path_factory, _toy_top_k, {},
                      titles=[f"Film {i}" for i in range(1, NUM_ITEMS + 1)])


def _request(port, method, path, body=None, headers=None):
    """(status, decoded JSON) of one request on a fresh connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    status, data = response.status, response.read()
    connection.close()
    return status, json.loads(data) if data else None


def _raw(port, data: bytes):
    """(status, decoded JSON) of bytes sent as they are."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        reply = b"".join(iter(lambda: s.recv(65536), b""))
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_good_requests_answer_as_the_loader(served):
    model, port, _ = served
    history = ["m3", "m7", 12]  # (ids given as integers are compared as strings: no item 12)
    status, answer = _request(port, "POST", "/recommend", {"history": history[:2], "k": 3})
    items, scores = model.recommend([history[:2]], 3)
    assert status == 200 and answer["items"] == items[0] and answer["scores"] == scores[0].tolist()
    assert answer["titles"] == [f"Film {i[1:]}" for i in items[0]]
    histories = [["m1"], ["m2", "m9", "m4", "m5", "m6", "m11"]]
    status, answer = _request(port, "POST", "/recommend", {"histories": histories})  # k: K
    items, scores = model.recommend(histories)
    assert status == 200 and answer["items"] == items and answer["scores"] == scores.tolist()
    assert len(answer["titles"]) == 2 and len(answer["items"][1]) == K
    assert _request(port, "GET", "/health") == (200, {"status": "ok", "model": "toy", "k": K,
                                                      "num_items": NUM_ITEMS, "time_query": None,
                                                      "user_features": None})


def _bad_requests():
    """name → (method, path, body, headers, status)."""
    recommend = ("POST", "/recommend")
    return {
        "malformed_json": (*recommend, '{"history": [', None, 400),
        "not_utf8": (*recommend, b'{"history": ["\xff"]}', None, 400),
        "not_an_object": (*recommend, ["m1"], None, 400),
        "nested_too_deep": (*recommend, "[" * 200_000, None, 400),
        "missing_history": (*recommend, {"k": 3}, None, 400),
        "both_fields": (*recommend, {"history": ["m1"], "histories": [["m1"]]}, None, 400),
        "unknown_field": (*recommend, {"history": ["m1"], "kk": 3}, None, 400),
        "history_not_a_list": (*recommend, {"history": "m1"}, None, 400),
        "float_id": (*recommend, {"history": [1.5]}, None, 400),
        "bool_id": (*recommend, {"history": [True]}, None, 400),
        "null_id": (*recommend, {"history": [None]}, None, 400),
        "histories_not_lists": (*recommend, {"histories": [["m1"], "m2"]}, None, 400),
        "unknown_ids": (*recommend, {"history": ["m1", "nope"]}, None, 400),
        "empty_history": (*recommend, {"history": []}, None, 400),
        "no_histories": (*recommend, {"histories": []}, None, 400),
        "too_many_histories": (*recommend, {"histories": [["m1"]] * 1025}, None, 400),
        "k_zero": (*recommend, {"history": ["m1"], "k": 0}, None, 400),
        "k_above_exported": (*recommend, {"history": ["m1"], "k": K + 1}, None, 400),
        "k_string": (*recommend, {"history": ["m1"], "k": "3"}, None, 400),
        "k_bool": (*recommend, {"history": ["m1"], "k": True}, None, 400),
        "k_beyond_the_rest": (*recommend, {"history": [f"m{i}" for i in range(1, 18)]}, None, 400),
        "body_too_long": (*recommend, "{}", {"Content-Length": str(serving_http.MAX_BODY + 1)}, 413),
        "bad_content_length": (*recommend, "{}", {"Content-Length": "x"}, 400),
        "unknown_path": ("POST", "/recommend/now", {"history": ["m1"]}, None, 404),
        "get_recommend": ("GET", "/recommend", None, None, 404),
        "unknown_get": ("GET", "/", None, None, 404),
        "delete": ("DELETE", "/recommend", None, None, 405),
        "put": ("PUT", "/recommend", {"history": ["m1"]}, None, 405),
        "made_up_method": ("BREW", "/health", None, None, 405),
        "times_for_a_model_without_a_time_bias": (*recommend, {"history": ["m1"], "times": [5]},
                                                  None, 400),
    }


@pytest.mark.parametrize("name", sorted(_bad_requests()))
def test_bad_request_is_a_4xx_and_the_server_goes_on(served, name):
    method, path, body, headers, want = _bad_requests()[name]
    status, answer = _request(served[1], method, path, body, headers)
    assert status == want and set(answer) == {"error"} and "\n" not in answer["error"]
    assert _request(served[1], "GET", "/health")[0] == 200


@pytest.mark.parametrize("data, want", [
    (b"POST /recommend HTTP/1.1\r\nHost: x\r\n\r\n", 411),  # no Content-Length
    (b"GET / / HTTP/1.1\r\n\r\n", 400),  # not a request line
    (b"POST /recommend HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"history\"", 400),  # cut short
])
def test_raw_bad_bytes_are_json_errors(served, data, want):
    status, answer = _raw(served[1], data)
    assert status == want and set(answer) == {"error"}
    assert _request(served[1], "GET", "/health")[0] == 200


def _toy_timed_top_k(history, exclude, times, query_time):
    """_toy_top_k whose scores also move with the gap from the last item to the query time."""
    return _toy_top_k(history, exclude, query_time - times[:, -1])


@pytest.fixture(scope="module")
def served_timed(tmp_path_factory):
    """The toy of a model with a time bias ("target" query)."""
    yield from _serve(tmp_path_factory, _toy_timed_top_k, {"time_query": "target"})


def test_a_time_model_reads_times_in_seconds_and_a_query_time(served_timed):
    model, port, _ = served_timed
    assert _request(port, "GET", "/health")[1]["time_query"] == "target"
    history, times = ["m3", "m7"], [1_700_000_000, 1_700_000_100]
    status, answer = _request(port, "POST", "/recommend", {"history": history, "times": times})
    items, scores = model.recommend([history], times=[times])
    assert status == 200 and answer["items"] == items[0] and answer["scores"] == scores[0].tolist()
    # The toy scores move with (query time - last item's time): the default query time is the
    # last item's, a later one moves the list, and only differences count.
    gap0 = model.recommend([history], times=[[0, 100]], query_times=[100])
    assert gap0[0] == items and gap0[1].tolist() == scores.tolist()
    later = {"histories": [history, history], "times": [times, [t + 9 for t in times]],
             "query_time": [times[-1] + 3, times[-1] + 12]}
    status, answer = _request(port, "POST", "/recommend", later)
    want = model.recommend([history], times=[[0, 100]], query_times=[103])
    assert status == 200 and answer["items"] == want[0] * 2 and answer["items"] != items * 2
    assert answer["scores"] == [want[1][0].tolist()] * 2


@pytest.mark.parametrize("body", [
    {"history": ["m1", "m2"]},  # no times
    {"history": ["m1", "m2"], "times": [5]},  # one time for two items
    {"history": ["m1", "m2"], "times": 5},
    {"history": ["m1", "m2"], "times": [5, 1.5]},
    {"history": ["m1", "m2"], "times": [5, True]},
    {"history": ["m1", "m2"], "times": [9, 5]},  # out of order
    {"history": ["m1", "m2"], "times": [5, 9], "query_time": 8},  # before the last item
    {"history": ["m1", "m2"], "times": [5, 9], "query_time": [10]},
    {"history": ["m1", "m2"], "times": [0, 2**31]},  # beyond int32 seconds
    {"histories": [["m1"]], "times": [5]},
    {"histories": [["m1"], ["m2"]], "times": [[5]]},
    {"histories": [["m1"]], "times": [[5]], "query_time": 6},
])
def test_bad_times_are_a_400_and_the_server_goes_on(served_timed, body):
    status, answer = _request(served_timed[1], "POST", "/recommend", body)
    assert status == 400 and set(answer) == {"error"} and "\n" not in answer["error"], answer
    assert _request(served_timed[1], "GET", "/health")[0] == 200


# The toy's user features: a categorical group ("x", "y", "z") and an age (numeric: raw mean 30,
# std 10), as export writes them; rows by user number (0: a user without features, then a, b, c)
_TOY_USER_FEATURES = [
    {"name": "group", "kind": "categorical", "vocab": ["<pad>", "<unknown>", "x", "y", "z"]},
    {"name": "age", "kind": "numeric", "mean": 30.0, "std": 10.0}]
_TOY_USER_TABLES = [np.array([[1], [2], [3], [4]], np.int32),
                    np.array([[0.0], [-1.0], [0.5], [1.0]], np.float32)]


def _toy_user_top_k(history, exclude, group, age):
    """_toy_top_k whose scores also move with the user's group and standardised age."""
    return _toy_top_k(history, exclude, (group[:, 0] - 1) * 5 + jnp.round(age[:, 0] * 2).astype(
        jnp.int32))


@pytest.fixture(scope="module")
def served_users(tmp_path_factory):
    """The toy of a model with user features (users "a", "b", "c")."""
    yield from _serve(tmp_path_factory, _toy_user_top_k, {"user_features": "input"},
                      users=["a", "b", "c"], user_features=_TOY_USER_FEATURES,
                      user_tables=_TOY_USER_TABLES)


def test_a_user_feature_model_reads_the_requests_user(served_users):
    """The toy's scores move with the user's features: "b" is number 2, null and no user are 0,
    and a user given by raw values ("y", age 35 standardises to 0.5) reads as "b"."""
    model, port, _ = served_users
    assert _request(port, "GET", "/health")[1]["user_features"] == "input"
    assert _request(port, "GET", "/user_features") == (200, {"user_features": "input", "features": [
        {"name": "group", "kind": "categorical", "values": ["x", "y", "z"]},
        {"name": "age", "kind": "numeric", "dim": 1}]})
    history = ["m3", "m7"]
    by_number = {n: model.top_k([model.index(history)], users=[n]) for n in range(4)}
    assert len({tuple(items[0]) for items, _ in by_number.values()}) == 4
    for user, number in [("b", 2), (None, 0), ({"group": "y", "age": 35}, 2), ({}, 0),
                         ({"group": "z", "age": 40}, 3), ({"group": ["x"], "age": 20.0}, 1)]:
        status, answer = _request(port, "POST", "/recommend", {"history": history, "user": user})
        assert status == 200 and answer["items"] == [model.ids[i] for i in by_number[number][0][0]]
    assert _request(port, "POST", "/recommend", {"history": history})[1]["items"] == [
        model.ids[i] for i in by_number[0][0][0]]
    status, answer = _request(port, "POST", "/recommend",
                              {"histories": [history] * 4,
                               "user": ["c", None, "a", {"group": "y", "age": 35}]})
    assert status == 200 and answer["items"] == [[model.ids[i] for i in by_number[n][0][0]]
                                                 for n in (3, 0, 1, 2)]


@pytest.mark.parametrize("body", [
    {"history": ["m1"], "user": "nobody"},
    {"history": ["m1"], "user": ["a"]},
    {"history": ["m1"], "user": True},
    {"histories": [["m1"]], "user": "a"},
    {"histories": [["m1"], ["m2"]], "user": ["a"]},
    {"histories": [["m1"]], "user": [1.5]},
    {"history": ["m1"], "user": {"group": "w"}},
    {"history": ["m1"], "user": {"colour": "x"}},
    {"history": ["m1"], "user": {"age": "old"}},
    {"history": ["m1"], "user": {"group": ["x", "y"]}},
    {"history": ["m1"], "user": [{"group": "x"}]},
])
def test_bad_users_are_a_400_and_the_server_goes_on(served_users, body):
    status, answer = _request(served_users[1], "POST", "/recommend", body)
    assert status == 400 and set(answer) == {"error"} and "\n" not in answer["error"], answer
    assert _request(served_users[1], "GET", "/health")[0] == 200


def test_a_user_to_a_model_without_user_features_is_a_400_and_null_is_no_user(served):
    status, answer = _request(served[1], "POST", "/recommend", {"history": ["m1"], "user": "a"})
    assert status == 400 and "has no user features" in answer["error"]
    assert _request(served[1], "GET", "/health")[1]["user_features"] is None
    assert _request(served[1], "GET", "/user_features") == (200, {"user_features": None,
                                                                  "features": []})
    want = _request(served[1], "POST", "/recommend", {"histories": [["m1"], ["m2"]]})
    got = _request(served[1], "POST", "/recommend", {"histories": [["m1"], ["m2"]],
                                                     "user": [None, None]})
    assert want[0] == got[0] == 200 and got[1] == want[1]


def test_internal_error_is_a_500_and_the_server_goes_on(served, monkeypatch):
    model, port, _ = served

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(model, "top_k", broken)
    status, answer = _request(port, "POST", "/recommend", {"history": ["m1"]})
    assert status == 500 and answer == {"error": "internal error: RuntimeError"}
    monkeypatch.undo()
    assert _request(port, "POST", "/recommend", {"history": ["m1"]})[0] == 200


def test_concurrent_requests_share_model_calls_and_answer_as_alone(served, monkeypatch):
    """32 threads asking at once: each gets what it gets alone, and those that wait while the
    first call runs are answered by one call together."""
    model, _, _ = served
    histories = [[f"m{1 + (i * 7 + j) % NUM_ITEMS}" for j in range(1 + i % 3)] for i in range(32)]
    alone = [model.recommend([h], 1 + i % K) for i, h in enumerate(histories)]
    calls, run = [], model._run
    barrier = threading.Barrier(len(histories))

    def counted(rows):
        if not calls:  # the first call waits until every other request is pending
            deadline = time.monotonic() + 30
            while len(model._pending) + len(rows) < len(histories) and time.monotonic() < deadline:
                time.sleep(0.01)
        calls.append(len(rows))
        return run(rows)

    monkeypatch.setattr(model, "_run", counted)
    together = [None] * len(histories)

    def ask(i):
        barrier.wait()
        together[i] = model.recommend([histories[i]], 1 + i % K)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(histories))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for (items, scores), (want_items, want_scores) in zip(together, alone):
        assert items == want_items and scores.tolist() == want_scores.tolist()
    assert sum(calls) == len(histories) and len(calls) == 2


def test_the_server_loads_no_flax_and_no_model_code():
    """`transrec_jax.serve` and the HTTP layer import neither flax nor transrec_jax.models."""
    code = ("import sys, transrec_jax.serve, transrec_jax.serving.http; print(sorted(m for m in "
            "sys.modules if m.split('.')[0] == 'flax' or m.startswith('transrec_jax.models')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_serve_cli_answers_and_refuses_a_directory_without_export(served, tmp_path):
    """`python -m transrec_jax.serve`: the URL it prints answers as the loader; a directory
    without manifest.json is one error line."""
    model, _, output = served
    server = subprocess.Popen([sys.executable, "-m", "transrec_jax.serve", f"--export={output}",
                               "--port=0"], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        port = int(re.search(r"http://127.0.0.1:(\d+)", server.stdout.readline()).group(1))
        status, answer = _request(port, "POST", "/recommend", {"history": ["m2"], "k": 2})
        assert status == 200 and answer["items"] == model.recommend([["m2"]], 2)[0][0]
    finally:
        server.terminate()
        server.wait()
    out = subprocess.run([sys.executable, "-m", "transrec_jax.serve", f"--export={tmp_path}"],
                         capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 1 and len(out.stderr.strip().splitlines()) == 1
    assert out.stderr.startswith(f"error: --export='{tmp_path}': expected a directory written by")
