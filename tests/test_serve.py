"""`featx serve` over the socket: the real server on a free loopback port,
talked to with httpx; the same numbers as `featx extract` and `featx predict`,
every bad input answered with its JSON error and followed by a good request,
overload, the token, the drain on SIGTERM/SIGINT."""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from featx import extract, read_layer  # noqa: E402
from featx.fit import fit  # noqa: E402
from featx.predict import predict  # noqa: E402
from featx.serve import ServeSpec  # noqa: E402
from tests.conftest import make_image  # noqa: E402

TESTS = Path(__file__).parent
#: Each loop of requests ends after this many seconds, whatever happens.
BOUND_S = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def b64(path: Path) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode()


def wait_until_ready(url: str, proc=None, *, token: str | None = None) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the server exited with {proc.returncode}")
        try:
            if (
                httpx.get(f"{url}/readyz", headers=headers, timeout=5).status_code
                == 200
            ):
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not become ready")


class ThreadServer:
    """uvicorn in a thread of this process, on a free loopback port."""

    def __init__(self, service, **limits) -> None:
        from featx.serve.server import make_server

        what = {} if "model_file" in limits else {"layer": "fc7", "weights": "random"}
        self.spec = ServeSpec(**what, port=free_port(), **limits).check()
        self.url = self.spec.url
        self.server = make_server(service, self.spec, log_level="warning")
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        wait_until_ready(self.url, token=self.spec.token)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "the server did not stop"


def write_jpegs(root: Path) -> Path:
    """Two classes of JPEGs of a few sizes, one over twice the resize target
    (so that --decode fast scales it while decoding)."""
    rng = np.random.default_rng(7)
    for label, name in enumerate(("cats", "dogs")):
        (root / name).mkdir(parents=True)
        for i in range(6):
            size = (
                (600, 520)
                if i == 0
                else tuple(int(v) for v in rng.integers(60, 160, 2))
            )
            make_image(rng, size, label).save(root / name / f"{i}.jpg", quality=90)
    return root


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A folder of JPEGs, its fc7 cache (seeded random AlexNet, as the server
    loads it) and a logistic regression fitted on it."""
    root = tmp_path_factory.mktemp("serve")
    folder = write_jpegs(root / "Train")
    cache = extract(
        folder, layers=["fc7"], weights="random", cache_dir=root / "cache",
        num_workers=0,
    ).cache_path  # fmt: skip
    model = fit(
        cache=cache, layer="fc7", clf="logreg", cv=3, out=root / "logreg.skops"
    ).model_path
    return {"folder": folder, "cache": cache, "model": Path(model), "root": root}


@pytest.fixture(scope="module")
def service(served):
    from featx.serve.service import FeatureService

    return FeatureService(ServeSpec(layer="fc7", weights="random"))


@pytest.fixture(scope="module")
def features_server(service):
    """The features server, decoding in worker processes, with small limits."""
    with ThreadServer(
        service, max_images=4, max_request_mb=1, decode_workers=1, decode_pool="process"
    ) as server:
        yield server


@pytest.fixture(scope="module")
def model_server(served):
    """A model file's server, behind a token."""
    from featx.serve.service import FeatureService

    spec = dict(model_file=served["model"], token="s3cret")
    service = FeatureService(ServeSpec(**spec))
    with ThreadServer(service, **spec) as server:
        server.headers = {"Authorization": "Bearer s3cret"}
        yield server


def files_of(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.jpg"))


def test_embeddings_equal_the_rows_extract_stores(served, features_server):
    X, _, paths, _ = read_layer(served["cache"], "fc7")
    rows = {p: x for p, x in zip(paths, X, strict=True)}
    files = files_of(served["folder"])[:4]
    got = httpx.post(
        f"{features_server.url}/v1/embeddings",
        json={"input": [b64(f) for f in files]},
        timeout=BOUND_S,
    )
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["object"] == "list" and body["model"] == "alexnet"
    assert body["layer"] == "fc7" and body["weights"] == "random(seed=0)"
    assert body["decode"] == "fast" and body["precision"] == "fp32"
    assert [d["index"] for d in body["data"]] == [0, 1, 2, 3]
    for f, item in zip(files, body["data"], strict=True):
        want = rows[str(f.relative_to(served["folder"]))]
        have = np.array(item["embedding"], dtype=np.float32)
        assert np.linalg.norm(have - want) <= 1e-5 * np.linalg.norm(want)


def test_base64_in_lines_is_read_as_one(served, features_server):
    """`base64 photo.jpg` (GNU coreutils) and MIME encoders break the text
    into lines of 76; the line breaks are not part of the image."""
    data = files_of(served["folder"])[0].read_bytes()
    url = f"{features_server.url}/v1/embeddings"
    answers = [
        httpx.post(url, json={"input": [text]}, timeout=BOUND_S)
        for text in (base64.b64encode(data).decode(), base64.encodebytes(data).decode())
    ]
    assert [a.status_code for a in answers] == [200, 200], answers[1].text
    assert answers[0].json()["data"] == answers[1].json()["data"]


def test_base64_encoding_and_data_uris(served, features_server):
    f = files_of(served["folder"])[0]
    uri = "data:image/jpeg;base64," + b64(f)
    floats = httpx.post(
        f"{features_server.url}/v1/embeddings", json={"input": uri}, timeout=BOUND_S
    ).json()["data"][0]["embedding"]
    packed = httpx.post(
        f"{features_server.url}/v1/embeddings",
        json={"input": [b64(f)], "encoding_format": "base64"},
        timeout=BOUND_S,
    ).json()["data"][0]["embedding"]
    unpacked = np.frombuffer(base64.b64decode(packed), dtype="<f4")
    np.testing.assert_array_equal(unpacked, np.array(floats, dtype=np.float32))


def test_a_bad_image_is_reported_at_its_index_and_the_others_answered(
    served, features_server
):
    good = b64(files_of(served["folder"])[1])
    body = httpx.post(
        f"{features_server.url}/v1/embeddings",
        json={"input": [good, "not base64!", good, b64(TESTS / "test_serve.py")]},
        timeout=BOUND_S,
    ).json()
    assert [d["index"] for d in body["data"]] == [0, 2]
    assert body["data"][0]["embedding"] == body["data"][1]["embedding"]
    assert [(e["index"], e["type"]) for e in body["errors"]] == [
        (1, "invalid_base64"),
        (3, "invalid_image"),
    ]


def bomb_png() -> bytes:
    """A small file that decodes to 225 megapixels: PIL's bomb guard refuses it."""
    out = io.BytesIO()
    Image.new("1", (15000, 15000)).save(out, format="PNG")
    return out.getvalue()


def sliver_png() -> bytes:
    """A 1x2000 image (a hundred bytes as a PNG): resized to a short side of
    256 it would be 256x512000 pixels, gigabytes and seconds of a core."""
    out = io.BytesIO()
    Image.new("RGB", (1, 2000)).save(out, format="PNG")
    return out.getvalue()


def truncated_jpeg(served) -> bytes:
    data = files_of(served["folder"])[0].read_bytes()  # the 600x520 one
    return data[: len(data) // 2]


def as_json(items) -> dict:
    return {"json": {"input": items}}


BAD_REQUESTS = {
    "empty body": (lambda s: {"content": b"", "headers": {"content-type": "application/json"}}, 400, "empty_body"),  # noqa: E501
    "malformed JSON": (lambda s: {"content": b'{"input": [', "headers": {"content-type": "application/json"}}, 400, "invalid_json"),  # noqa: E501
    "wrong shape": (lambda s: {"json": {"inputs": ["x"]}}, 422, "invalid_request"),
    "no image": (lambda s: as_json([]), 422, "invalid_request"),
    "malformed base64": (lambda s: as_json(["@@@@"]), 422, "invalid_base64"),
    "not an image": (lambda s: as_json([base64.b64encode(b"hello").decode()]), 422, "invalid_image"),  # noqa: E501
    "truncated JPEG": (lambda s: as_json([base64.b64encode(truncated_jpeg(s)).decode()]), 422, "invalid_image"),  # noqa: E501
    "decompression bomb": (lambda s: as_json([base64.b64encode(bomb_png()).decode()]), 422, "invalid_image"),  # noqa: E501
    "a URL": (lambda s: as_json(["http://127.0.0.1:1/cat.jpg"]), 422, "url_not_allowed"),  # noqa: E501
    "over --max-request-mb": (lambda s: as_json(["A" * (1024 * 1024 + 8)]), 413, "request_too_large"),  # noqa: E501
    "over --max-images": (lambda s: as_json([b64(files_of(s["folder"])[1])] * 5), 413, "too_many_images"),  # noqa: E501
    "wrong content type": (lambda s: {"content": b"x", "headers": {"content-type": "text/plain"}}, 415, "unsupported_media_type"),  # noqa: E501
    "a sliver (resizes to gigapixels)": (lambda s: as_json([base64.b64encode(sliver_png()).decode()]), 422, "invalid_image"),  # noqa: E501
    "deeply nested JSON": (lambda s: {"content": b"[" * 100_000 + b"]" * 100_000, "headers": {"content-type": "application/json"}}, 400, "invalid_json"),  # noqa: E501
    "gzip-encoded body": (lambda s: {"content": gzip.compress(b'{"input": ["x"]}'), "headers": {"content-type": "application/json", "content-encoding": "gzip"}}, 415, "unsupported_media_type"),  # noqa: E501
    "dimensions other than the layer's": (lambda s: {"json": {"input": [b64(files_of(s["folder"])[1])], "dimensions": 5}}, 422, "invalid_request"),  # noqa: E501
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_input_gets_its_json_error_and_the_next_request_is_answered(
    served, features_server, case
):
    make, status, kind = BAD_REQUESTS[case]
    url = f"{features_server.url}/v1/embeddings"
    got = httpx.post(url, **make(served), timeout=BOUND_S)
    assert got.status_code == status, got.text
    error = got.json()["error"]
    assert error["type"] == kind and error["message"]
    assert set(error) == {"message", "type", "index"}
    if status == 422 and kind != "invalid_request":
        assert error["index"] == 0
    good = httpx.post(
        url, json={"input": [b64(files_of(served["folder"])[2])]}, timeout=BOUND_S
    )
    assert good.status_code == 200 and len(good.json()["data"]) == 1


def test_predictions_equal_featx_predict(served, model_server):
    files = files_of(served["folder"])[:4]
    want = predict(served["model"], files, num_workers=0, top_k=2)
    parts = [("file", (f.name, f.read_bytes(), "image/jpeg")) for f in files]
    multipart = httpx.post(
        f"{model_server.url}/v1/predict",
        files=parts,
        data={"top_k": "2"},
        headers=model_server.headers,
        timeout=BOUND_S,
    )
    assert multipart.status_code == 200, multipart.text
    via_json = httpx.post(
        f"{model_server.url}/v1/predict",
        json={"input": [b64(f) for f in files], "top_k": 2},
        headers=model_server.headers,
        timeout=BOUND_S,
    )
    for body in (multipart.json(), via_json.json()):
        assert body["model"]["classes"] == ["cats", "dogs"]
        assert body["model"]["layer"] == "fc7"
        assert 0 <= body["model"]["cv_accuracy"] <= 1
        assert len(body["model"]["cv_accuracy_ci95"]) == 2
        for w, p in zip(want, body["predictions"], strict=True):
            assert p["label"] == w.label and p["score_kind"] == w.score_kind
            assert list(p["scores"]) == [c for c, _ in w.top]
            for (_, score), got in zip(w.top, p["scores"].values(), strict=True):
                assert abs(got - score) <= 1e-6
    assert [p["filename"] for p in multipart.json()["predictions"]] == [
        f.name for f in files
    ]


def test_predict_reports_a_bad_file_at_its_index(served, model_server):
    good = files_of(served["folder"])[3]
    parts = [
        ("file", ("notes.txt", b"not an image", "text/plain")),
        ("file", (good.name, good.read_bytes(), "image/jpeg")),
    ]
    body = httpx.post(
        f"{model_server.url}/v1/predict", files=parts, headers=model_server.headers,
        timeout=BOUND_S,
    ).json()  # fmt: skip
    bad, ok = body["predictions"]
    assert bad["label"] is None and bad["error"]["type"] == "invalid_image"
    assert bad["filename"] == "notes.txt" and ok["label"] in ("cats", "dogs")


def test_the_token_guards_every_endpoint_but_healthz(model_server):
    url = model_server.url
    assert httpx.get(f"{url}/healthz").status_code == 200
    for path in ("/readyz", "/metrics", "/openapi.json", "/docs"):
        refused = httpx.get(f"{url}{path}")
        assert refused.status_code == 401, path
        assert refused.json()["error"]["type"] == "unauthorized"
        wrong = httpx.get(f"{url}{path}", headers={"Authorization": "Bearer s3cre"})
        assert wrong.status_code == 401, path
        assert (
            httpx.get(f"{url}{path}", headers=model_server.headers).status_code == 200
        )
    refused = httpx.post(f"{url}/v1/predict", json={"input": ["x"]})
    assert refused.status_code == 401


def test_two_authorization_headers_are_refused(model_server):
    """A proxy may read one and featx the other: neither order gets in."""
    for pair in (["Bearer wrong", "Bearer s3cret"], ["Bearer s3cret", "Bearer wrong"]):
        got = httpx.get(
            f"{model_server.url}/readyz",
            headers=[("Authorization", value) for value in pair],
        )
        assert got.status_code == 401, pair
        assert got.json()["error"]["type"] == "unauthorized"
    assert (
        httpx.get(f"{model_server.url}/readyz", headers=model_server.headers)
    ).status_code == 200


def test_bad_form_fields_get_their_json_errors(served, model_server):
    good = files_of(served["folder"])[3]
    part = ("file", (good.name, good.read_bytes(), "image/jpeg"))
    url, headers = f"{model_server.url}/v1/predict", model_server.headers
    for top_k in ("0", "-1", "²", "1.5", ""):
        got = httpx.post(
            url, files=[part], data={"top_k": top_k}, headers=headers, timeout=BOUND_S
        )
        assert got.status_code == 422, (top_k, got.text)
        assert got.json()["error"]["type"] == "invalid_request"
    tiny = ("file", ("a.png", b"x", "image/png"))
    for count in (65, 70):  # the parser's own limit is at 65
        got = httpx.post(url, files=[tiny] * count, headers=headers, timeout=BOUND_S)
        assert got.status_code == 413, (count, got.text)
        assert got.json()["error"]["type"] == "too_many_images"
    got = httpx.post(
        url, files=[part], data={"top_k": "2"}, headers=headers, timeout=BOUND_S
    )
    assert got.status_code == 200 and len(got.json()["predictions"][0]["scores"]) == 2


def test_an_item_that_is_not_a_string_is_refused_at_its_index(served, features_server):
    good = b64(files_of(served["folder"])[1])
    for items, index in (([good, 5], 1), ([None], 0), ([good, good, {"a": 1}], 2)):
        got = httpx.post(
            f"{features_server.url}/v1/embeddings", json={"input": items},
            timeout=BOUND_S,
        )  # fmt: skip
        assert got.status_code == 422, got.text
        error = got.json()["error"]
        assert error["type"] == "invalid_request" and error["index"] == index
        assert f"input[{index}]" in error["message"]
    got = httpx.post(
        f"{features_server.url}/v1/embeddings", json={"input": 5}, timeout=BOUND_S
    )
    assert got.status_code == 422
    assert "a list of base64-encoded images" in got.json()["error"]["message"]


def raw_exchange(url: str, request: bytes) -> tuple[int, dict, bytes]:
    """Send ``request`` as it is and read the answer: status, headers, body."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(request)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
            head, _, body = answer.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = dict(line.lower().split(": ", 1) for line in lines[1:] if line)
            if body and len(body) >= int(headers.get("content-length", 1 << 30)):
                break
    return int(lines[0].split()[1]), headers, body


def test_headers_over_the_limit_and_garbage_get_json_errors(features_server):
    """uvicorn's httptools parser keeps a header of any size in memory: a
    client could make the server hold gigabytes. Past 64 KiB it is refused."""
    pytest.importorskip("httptools")
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 70_000
    for request, status, kind in (
        (head, 431, "headers_too_large"),  # never ends: still refused
        (b"GARBAGE\r\n\r\n", 400, "invalid_http"),
    ):
        got, headers, body = raw_exchange(features_server.url, request)
        assert got == status, body
        assert headers["content-type"] == "application/json"
        error = json.loads(body)["error"]
        assert error["type"] == kind and error["message"] and error["index"] is None
    fine = httpx.get(f"{features_server.url}/healthz", headers={"X-Long": "a" * 8000})
    assert fine.status_code == 200


def test_probes_answer_head_as_get(features_server):
    """Uptime monitors and some load balancers probe with HEAD."""
    for path in ("/healthz", "/readyz"):
        got = httpx.head(f"{features_server.url}{path}")
        assert got.status_code == 200 and got.content == b"", path


def test_features_server_has_no_predict(features_server):
    got = httpx.post(f"{features_server.url}/v1/predict", json={"input": ["x"]})
    assert got.status_code == 404 and got.json()["error"]["type"] == "no_classifier"


def test_metrics_openapi_and_docs(features_server):
    httpx.post(f"{features_server.url}/v1/embeddings", json={"input": ["@@"]})
    text = httpx.get(f"{features_server.url}/metrics").text
    assert 'featx_requests_total{endpoint="/v1/embeddings",status="422"}' in text
    assert 'featx_decode_failures_total{type="invalid_base64"}' in text
    for name in ("featx_batch_size_bucket", "featx_queue_depth", "featx_images_total",
                 "featx_request_latency_seconds_bucket"):  # fmt: skip
        assert name in text
    schema = httpx.get(f"{features_server.url}/openapi.json").json()
    assert {"/v1/embeddings", "/v1/predict", "/healthz", "/readyz"} <= set(
        schema["paths"]
    )
    body = schema["paths"]["/v1/embeddings"]["post"]["requestBody"]
    assert "encoding_format" in json.dumps(body)
    assert "swagger" in httpx.get(f"{features_server.url}/docs").text.lower()


class SlowService:
    """A service whose forward pass takes ``delay`` seconds longer."""

    def __init__(self, service, delay: float) -> None:
        self._service, self.delay = service, delay

    def __getattr__(self, name):
        return getattr(self._service, name)

    def forward(self, crops):
        time.sleep(self.delay)
        return self._service.forward(crops)


def test_overload_answers_503_with_retry_after_and_recovers(served, service):
    good = {"input": [b64(files_of(served["folder"])[1])]}
    slow = SlowService(service, 0.5)
    with ThreadServer(
        slow, max_queue=2, max_batch_size=1, decode_pool="thread"
    ) as server:

        def call(_):
            return httpx.post(f"{server.url}/v1/embeddings", json=good, timeout=BOUND_S)

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(call, range(8)))
        statuses = sorted(a.status_code for a in answers)
        assert set(statuses) == {200, 503}, statuses
        refused = next(a for a in answers if a.status_code == 503)
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused.json()["error"]["type"] == "overloaded"
        assert call(0).status_code == 200


class SlowDecoding(SlowService):
    """A service whose decoding takes ``delay`` seconds longer."""

    def forward(self, crops):
        return self._service.forward(crops)

    def decode(self, data, **kwargs):
        time.sleep(self.delay)
        return self._service.decode(data, **kwargs)


def test_images_still_decoding_count_against_the_queue(served, service):
    """When decoding is the slow part (large PNGs), the forward queue stays
    short: the images waiting to be decoded must count too, or no request is
    ever refused and they pile up in memory."""
    good = {"input": [b64(files_of(served["folder"])[1])]}
    with ThreadServer(
        SlowDecoding(service, 0.5), max_queue=2, decode_workers=1,
        decode_pool="thread",
    ) as server:  # fmt: skip

        def call(_):
            return httpx.post(f"{server.url}/v1/embeddings", json=good, timeout=BOUND_S)

        with ThreadPoolExecutor(8) as pool:
            statuses = sorted(a.status_code for a in pool.map(call, range(8)))
        assert set(statuses) == {200, 503}, statuses
        assert call(0).status_code == 200


def test_concurrent_requests_share_forward_passes(served, service):
    good = {"input": [b64(files_of(served["folder"])[1])]}
    with ThreadServer(
        SlowService(service, 0.3), max_batch_size=8, decode_pool="thread"
    ) as server:
        with ThreadPoolExecutor(6) as pool:
            answers = list(
                pool.map(
                    lambda _: httpx.post(
                        f"{server.url}/v1/embeddings", json=good, timeout=BOUND_S
                    ),
                    range(6),
                )
            )
        assert [a.status_code for a in answers] == [200] * 6
        vectors = np.array([a.json()["data"][0]["embedding"] for a in answers])
        np.testing.assert_allclose(vectors, vectors[[0] * 6], rtol=1e-5, atol=1e-6)
        text = httpx.get(f"{server.url}/metrics").text
        passes = float(text.split("featx_batch_size_count ")[1].split()[0])
        assert passes < 6


class FailingOnce(SlowService):
    """A service whose first forward pass fails."""

    def forward(self, crops):
        if not getattr(self, "failed", False):
            self.failed = True
            raise RuntimeError("out of memory (planted)")
        return self._service.forward(crops)


def test_a_failed_forward_pass_is_a_json_500_and_the_server_goes_on(served, service):
    good = {"input": [b64(files_of(served["folder"])[1])]}
    with ThreadServer(FailingOnce(service, 0), decode_pool="thread") as server:
        first = httpx.post(f"{server.url}/v1/embeddings", json=good, timeout=BOUND_S)
        assert first.status_code == 500
        assert first.json()["error"] == {
            "message": "internal error (RuntimeError)",
            "type": "internal_error",
            "index": None,
        }
        again = httpx.post(f"{server.url}/v1/embeddings", json=good, timeout=BOUND_S)
        assert again.status_code == 200


def test_a_request_waiting_past_the_timeout_gets_504(served, service):
    good = {"input": [b64(files_of(served["folder"])[1])]}
    with ThreadServer(
        SlowService(service, 1.5), timeout=0.5, decode_pool="thread"
    ) as server:
        got = httpx.post(f"{server.url}/v1/embeddings", json=good, timeout=BOUND_S)
        assert got.status_code == 504 and got.json()["error"]["type"] == "timeout"
        assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_a_body_that_stops_arriving_gets_408(served, service):
    """A client that announces a body and sends part of it held its connection
    and its bytes for ever; --timeout bounds the reading too."""
    with ThreadServer(service, timeout=1, decode_pool="thread") as server:
        request = (
            b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
            b'{"input": ['
        )
        status, headers, body = raw_exchange(server.url, request)
        assert status == 408, body
        assert json.loads(body)["error"]["type"] == "request_timeout"
        good = {"input": [b64(files_of(served["folder"])[1])]}
        got = httpx.post(f"{server.url}/v1/embeddings", json=good, timeout=BOUND_S)
        assert got.status_code == 200


def test_a_connection_that_sends_no_whole_head_is_closed(service, monkeypatch):
    """Connections that never finish their headers (or send nothing) were
    held for ever: enough of them and the server runs out of descriptors."""
    pytest.importorskip("httptools")
    import featx.serve.protocol

    monkeypatch.setattr(featx.serve.protocol, "HEAD_TIMEOUT_S", 1.0, raising=False)
    with ThreadServer(service, decode_pool="thread") as server:
        status, headers, body = raw_exchange(
            server.url, b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
        )
        assert status == 408 and json.loads(body)["error"]["type"] == (
            "request_timeout"
        )
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as idle:
            assert idle.recv(100) == b""  # closed, not left open
        assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_cli_warns_without_a_token_on_a_public_address(monkeypatch):
    from click.testing import CliRunner

    import featx.serve.server
    from featx.cli import main

    seen = {}
    monkeypatch.setattr(
        featx.serve.server, "serve", lambda service, spec, **kw: seen.update(spec=spec)
    )  # nothing binds
    out = CliRunner().invoke(
        main, ["serve", "--layer", "fc7", "--weights", "random", "--host", "0.0.0.0"],
        catch_exceptions=False,
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "WARNING: random weights, NOT pretrained" in out.output
    assert "listening on 0.0.0.0 without a token" in out.output
    assert "at http://0.0.0.0:8000" in out.output
    assert "model: alexnet, layer: fc7" in out.output
    assert seen["spec"].host == "0.0.0.0"


def test_cli_serves_a_model_file_with_the_token_from_the_environment(
    served, monkeypatch
):
    from click.testing import CliRunner

    import featx.serve.server
    from featx.cli import main

    seen = {}
    monkeypatch.setattr(
        featx.serve.server, "serve", lambda service, spec, **kw: seen.update(spec=spec)
    )
    out = CliRunner().invoke(
        main, ["serve", "--model-file", str(served["model"]), "--port", "9123"],
        env={"FEATX_SERVE_TOKEN": "from-env"}, catch_exceptions=False,
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "predictions and features at http://127.0.0.1:9123" in out.output
    assert "layer: fc7" in out.output and "weights: random(seed=0)" in out.output
    assert f"classifier: logreg from {served['model']}, 2 classes (cats, dogs)" in (
        out.output
    )
    assert "cross-validated accuracy" in out.output
    assert "without a token" not in out.output
    assert seen["spec"].token == "from-env"


def test_cli_without_ray_says_which_extra(monkeypatch):
    from click.testing import CliRunner

    from featx.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "featx.serve.ray_app", raising=False)
    out = CliRunner().invoke(
        main, ["serve", "--layer", "fc7", "--weights", "random", "--engine", "ray"]
    )
    assert out.exit_code == 1
    assert "pip install 'featx[serve,ray]'" in out.output


def test_cli_refuses_both_or_neither():
    from click.testing import CliRunner

    from featx.cli import main

    out = CliRunner().invoke(main, ["serve"])
    assert (
        out.exit_code == 2 and "give --model-file M.skops, or --layer L" in out.output
    )
    out = CliRunner().invoke(
        main, ["serve", "--layer", "fc7", "--model-file", "m.skops"]
    )
    assert out.exit_code == 2 and "not both" in out.output


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_a_signal_drains_the_requests_in_flight_and_exits_0(served, sig, tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "featx", "serve", "--layer", "fc7", "--weights",
            "random", "--port", str(port), "--max-batch-size", "2",
            "-q",
        ],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(TESTS.parent)},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, proc)
        good = {"input": [b64(f) for f in files_of(served["folder"])]}  # 12 images
        with ThreadPoolExecutor(3) as pool:
            calls = [
                pool.submit(httpx.post, f"{url}/v1/embeddings", json=good, timeout=60)
                for _ in range(3)
            ]
            deadline = time.monotonic() + BOUND_S
            while time.monotonic() < deadline:  # all three taken, in 18 batches
                text = httpx.get(f"{url}/metrics").text
                if 'featx_images_total{endpoint="/v1/embeddings"} 36.0' in text:
                    break
                time.sleep(0.05)
            in_flight = sum(not c.done() for c in calls)
            proc.send_signal(sig)
            answers = [c.result(timeout=BOUND_S) for c in calls]
        assert in_flight > 0
        assert [a.status_code for a in answers] == [200, 200, 200]
        out, err = proc.communicate(timeout=BOUND_S)
        assert proc.returncode == 0, err.decode()[-2000:]
        assert f"at {url}" in err.decode() and "layer: fc7" in err.decode()
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{url}/healthz", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


@pytest.mark.slow
def test_ray_serve_answers_equal_the_local_servers(served, features_server, tmp_path):
    pytest.importorskip("ray.serve")
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "featx", "serve", "--engine", "ray",
            "--replicas", "2", "--layer", "fc7", "--weights", "random",
            "--port", str(port), "--token", "t0k",
        ],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(TESTS.parent)},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": "Bearer t0k"}
    try:
        wait_until_ready(url, proc, token="t0k")
        body = {"input": [b64(f) for f in files_of(served["folder"])[:3]] + ["@"]}
        answers = {}
        for name, where in (("ray", url), ("local", features_server.url)):
            got = httpx.post(
                f"{where}/v1/embeddings", json=body, headers=headers, timeout=BOUND_S
            )
            assert got.status_code == 200, got.text
            answers[name] = got.json()
        ray, local = answers["ray"], answers["local"]
        assert ray["errors"] == local["errors"] and len(ray["data"]) == 3
        for a, b in zip(ray["data"], local["data"], strict=True):
            assert a["index"] == b["index"]
            np.testing.assert_allclose(a["embedding"], b["embedding"], rtol=1e-5)
        assert httpx.get(f"{url}/readyz").status_code == 401  # the same app
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=120)
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)


def test_decodes_in_threads_keep_their_own_bomb_warning(monkeypatch):
    """Two images open at once in serve's decode threads: the one over PIL's
    pixel limit is refused, though the other opened while it was opening
    (``warnings.catch_warnings`` is process-wide: without the turns, the
    warning went to the other thread's record and the guard was bypassed)."""
    import featx.images.decode as decode
    from featx.errors import ImageDecodeError

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)
    big, small = io.BytesIO(), io.BytesIO()
    Image.new("RGB", (80, 80)).save(big, format="PNG")  # 6400 px: warned at open
    Image.new("RGB", (40, 40)).save(small, format="PNG")
    small_inside, big_opened = threading.Event(), threading.Event()
    real_open = Image.open

    def opening(fp, *args, **kwargs):
        if fp.getvalue() == big.getvalue():
            small_inside.wait(timeout=2)  # the small one opens meanwhile
            img = real_open(fp, *args, **kwargs)
            big_opened.set()
            return img
        small_inside.set()
        big_opened.wait(timeout=2)
        return real_open(fp, *args, **kwargs)

    monkeypatch.setattr(decode.Image, "open", opening)
    results = {}

    def run(name, data):
        try:
            results[name] = decode.decode_image(data).size
        except ImageDecodeError as exc:
            results[name] = str(exc)

    threads = [
        threading.Thread(target=run, args=("big", big.getvalue())),
        threading.Thread(target=run, args=("small", small.getvalue())),
    ]
    threads[0].start()
    time.sleep(0.2)  # the big one is inside its open first
    threads[1].start()
    for t in threads:
        t.join(timeout=30)
    assert results["small"] == (40, 40)
    assert "decompression bomb" in results["big"]


@pytest.mark.slow
def test_an_int8_model_is_served_as_predict_runs_it(served, tmp_path):
    """A model fitted on OpenVINO int8 features: the server runs that int8
    network (the one extract made, not made again) and answers what `featx
    predict` answers; it will not run it with torch."""
    from featx.compute import exports
    from featx.predict.modelfile import ModelFileError
    from featx.serve.service import FeatureService
    from tests.needs import need

    need("onnx", "openvino", "nncf")
    cache = extract(
        served["folder"], layers=["fc7"], weights="random", num_workers=0,
        cache_dir=tmp_path / "cache", runtime="openvino", precision="int8",
    ).cache_path  # fmt: skip
    model = fit(
        cache=cache, layer="fc7", clf="logreg", cv=3, out=tmp_path / "int8.skops"
    ).model_path
    files = files_of(served["folder"])[:4]
    want = predict(model, files, num_workers=0, top_k=2)
    made = dict(exports.EXPORTS)
    with pytest.raises(ModelFileError, match="int8 by openvino; it runs with that"):
        FeatureService(ServeSpec(model_file=model, runtime="torch"))
    spec = {"model_file": model}
    with ThreadServer(FeatureService(ServeSpec(**spec)), **spec) as server:
        inputs = {"input": [b64(f) for f in files]}
        got = httpx.post(
            f"{server.url}/v1/predict", json={**inputs, "top_k": 2}, timeout=BOUND_S
        )
        embedded = httpx.post(
            f"{server.url}/v1/embeddings", json=inputs, timeout=BOUND_S
        )
    assert made == exports.EXPORTS
    assert got.status_code == 200, got.text
    for w, p in zip(want, got.json()["predictions"], strict=True):
        assert p["label"] == w.label
        for (_, score), value in zip(w.top, p["scores"].values(), strict=True):
            assert abs(value - score) <= 1e-4
    body = embedded.json()
    assert body["runtime"] == "openvino" and body["precision"] == "int8"
    X, _, paths, _ = read_layer(cache, "fc7")
    rows = dict(zip(paths, X, strict=True))
    for f, item in zip(files, body["data"], strict=True):
        stored = rows[str(f.relative_to(served["folder"]))]
        have = np.array(item["embedding"], dtype=np.float32)
        assert np.linalg.norm(have - stored) <= 1e-4 * np.linalg.norm(stored)


@pytest.mark.slow
def test_a_features_server_runs_openvino_as_torch_within_1e_4(served):
    from featx.errors import ParameterError
    from featx.serve.service import FeatureService
    from tests.needs import need

    need("onnx", "openvino")
    spec = {"layer": "fc7", "weights": "random", "runtime": "openvino"}
    with pytest.raises(ParameterError, match="calibration images"):
        ServeSpec(**{**spec, "precision": "int8"}).check()
    service = FeatureService(ServeSpec(**spec))
    assert service.describe()["runtime"] == "openvino"
    X, _, paths, _ = read_layer(served["cache"], "fc7")  # torch fp32
    rows = dict(zip(paths, X, strict=True))
    files = files_of(served["folder"])[:3]
    with ThreadServer(service, runtime="openvino") as server:
        got = httpx.post(
            f"{server.url}/v1/embeddings",
            json={"input": [b64(f) for f in files]},
            timeout=BOUND_S,
        )
    assert got.status_code == 200, got.text
    assert got.json()["runtime"] == "openvino"
    for f, item in zip(files, got.json()["data"], strict=True):
        want = rows[str(f.relative_to(served["folder"]))]
        have = np.array(item["embedding"], dtype=np.float32)
        assert np.linalg.norm(have - want) <= 1e-4 * np.linalg.norm(want)
