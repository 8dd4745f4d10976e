"""``c98k browse``: what is never served or accepted. Paths out of the data root (``..``, encoded
``%2e%2e``/``%2F``, absolute paths, symlinks leading out), malformed corrections (a clear 4xx naming
the field, nothing written), foreign Host headers, and a non-loopback address without ``--allow-remote``.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from synthetic import make_labelled_corpus
from test_browse_app import client_for, generated_videos, make_browse_corpus, served

from commercial98k.manifest.corrections import corrections_path
from commercial98k.manifest.io import read_manifest

SECRET = "top secret outside the data root"


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory) -> tuple:
    """Four clips; no test writes corrections for it."""
    videos = generated_videos(tmp_path_factory.mktemp("videos"))
    return make_browse_corpus(tmp_path_factory.mktemp("small"), n_clips=4, videos=videos)


@pytest.fixture(scope="module")
def client(small_corpus):
    return client_for(*small_corpus)


@pytest.fixture(scope="module")
def escape_root(tmp_path_factory):
    """A data root holding a symlink to a file outside it, a symlinked folder outside it, and one inside."""
    tmp_path = tmp_path_factory.mktemp("escape")
    root = tmp_path / "root"
    (root / "videos").mkdir(parents=True)
    (root / "videos" / "inside.mp4").write_bytes(b"inside")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text(SECRET)
    os.symlink(outside / "secret.txt", root / "videos" / "link.mp4")
    os.symlink(outside, root / "elsewhere")
    os.symlink(root / "videos" / "inside.mp4", root / "alias.mp4")
    manifest, _ = make_labelled_corpus(tmp_path / "m", n_clips=2)
    return manifest, root


@pytest.fixture(scope="module")
def escape_server(escape_root) -> Iterator[str]:
    from commercial98k.browse.app import create_app

    with served(create_app(*escape_root)) as base:
        yield base


@pytest.mark.parametrize("url, status", [
    ("/media/../outside/secret.txt", 403), ("/media/videos/../../outside/secret.txt", 403),
    ("/media/%2e%2e/outside/secret.txt", 403), ("/media/videos%2F..%2F..%2Foutside%2Fsecret.txt", 403),
    ("/media/%2E%2E%2Foutside%2Fsecret.txt", 403), ("/media//etc/passwd", 403), ("/media/%2Fetc%2Fpasswd", 403),
    ("/media/videos/link.mp4", 403), ("/media/elsewhere/secret.txt", 403), ("/media/videos/%00x", 400),
    ("/media/videos\\..\\..\\outside\\secret.txt", 400), ("/media/videos/missing.mp4", 404), ("/media/videos", 404),
    ("/thumb?video=../outside/secret.txt&t=0", 403), ("/thumb?video=%2Fetc%2Fpasswd&t=0", 403),
])
def test_nothing_outside_the_data_root_is_served(escape_server, url, status):
    # a real server and http.client: an HTTP client library would normalise the dot segments away
    conn = http.client.HTTPConnection(escape_server.removeprefix("http://"), timeout=30)
    conn.request("GET", url)
    r = conn.getresponse()
    text = r.read().decode("utf-8", "replace")
    assert r.status == status, (url, text)
    assert SECRET not in text and "root:" not in text
    assert json.loads(text)["error"].startswith("error:")


def test_symlinks_inside_the_root_are_served(escape_root):
    c = client_for(*escape_root)
    assert c.get("/media/alias.mp4").content == b"inside"
    assert c.get("/media/videos/inside.mp4").content == b"inside"


def test_a_foreign_host_header_is_refused(client):
    assert client.get("/api/meta", headers={"Host": "evil.example"}).status_code == 400
    assert client.get("/api/meta", headers={"Host": "localhost:8098"}).status_code == 200


@pytest.mark.parametrize("body, content_type, status, names", [
    (b"{not json", "application/json", 400, "not JSON"),
    (b'{"clip_id": "x"}', "text/plain", 415, "application/json"),
    (b"[1, 2]", "application/json", 400, "object"),
    (json.dumps({"kind": "category", "value": "food"}).encode(), "application/json", 422, "clip_id"),
    (json.dumps({"clip_id": "@0", "kind": "colour", "value": "red"}).encode(), "application/json", 422, "kind"),
    (json.dumps({"clip_id": "@0", "kind": "category", "value": "spaceships"}).encode(), "application/json", 422,
     "value"),
    (json.dumps({"clip_id": "@0", "kind": "unusable"}).encode(), "application/json", 422, "reason"),
    (json.dumps({"clip_id": "@0", "kind": "music_join", "value": "confirm"}).encode(), "application/json", 422,
     "other"),
    (json.dumps({"clip_id": "@0", "kind": "music_join", "value": "maybe", "other": "@1"}).encode(),
     "application/json", 422, "value"),
    (json.dumps({"clip_id": "@0", "kind": "category", "value": "food", "when": "2020"}).encode(),
     "application/json", 422, "when"),
    (json.dumps({"clip_id": "no-such-clip", "kind": "category", "value": "food"}).encode(), "application/json",
     404, "clip_id"),
    (json.dumps({"clip_id": "@0", "kind": "music_join", "value": "reject", "other": "ghost"}).encode(),
     "application/json", 404, "other"),
    (json.dumps({"clip_id": "@0", "kind": "category", "value": 7}).encode(), "application/json", 422, "value"),
    (json.dumps({"clip_id": "@0", "kind": "unusable", "reason": "x" * 20_000}).encode(), "application/json", 413,
     "at most"),
])
def test_malformed_corrections_are_a_clear_4xx(small_corpus, body, content_type, status, names):
    manifest, root = small_corpus
    ids = [r["clip_id"] for r in read_manifest(manifest).to_pylist()]
    body = body.replace(b"@0", ids[0].encode()).replace(b"@1", ids[1].encode())
    r = client_for(manifest, root).post("/api/corrections", content=body, headers={"Content-Type": content_type})
    assert r.status_code == status, r.text
    assert r.json()["error"].startswith("error:") and names in r.json()["error"]
    assert not corrections_path(manifest).exists()


def test_cli_refuses_a_non_loopback_host_without_the_flag(small_corpus):
    from pipelines.cli import main

    manifest, root = small_corpus
    r = CliRunner().invoke(main, ["browse", "--manifest", str(manifest), "--data-root", str(root),
                                  "--host", "0.0.0.0"])
    assert r.exit_code == 1 and "error:" in r.output and "--allow-remote" in r.output
    r = CliRunner().invoke(main, ["browse", "--manifest", str(root / "none.parquet"), "--data-root", str(root)])
    assert r.exit_code == 1 and "no such manifest" in r.output and "Traceback" not in r.output
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = CliRunner().invoke(main, ["browse", "--manifest", str(manifest), "--data-root", str(root),
                                      "--port", str(port)])
    assert r.exit_code == 1 and f"cannot listen on 127.0.0.1:{port}" in r.output and "--port" in r.output


def test_remote_serving_warns(small_corpus, monkeypatch, capsys):
    import uvicorn

    from commercial98k.browse.server import is_loopback, serve

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw))
    serve(small_corpus[0], small_corpus[1], host="0.0.0.0", port=0, allow_remote=True)
    assert seen["host"] == "0.0.0.0" and "warning:" in capsys.readouterr().err
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3")
