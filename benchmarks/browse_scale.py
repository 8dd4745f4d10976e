"""``c98k browse`` at scale: a synthetic 1,000,000-row clips manifest served by the real command.

Measures, through HTTP against a ``c98k browse`` server process: the first page (server start
to the first grid page, streamed while the index builds), the time until the index is ready,
a filtered page (category + confidence range + free text + sort), a failures view, and the
server's resident memory. The reference is
pyarrow reading the same columns of the same file in this run (``pq.read_table``), so the
printed ratios say how much the browser costs over the bare read.

    .venv/bin/python benchmarks/browse_scale.py [--rows 1000000] [--work bench_work/browse]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from commercial98k.browse.index import READ_COLUMNS  # noqa: E402
from commercial98k.label.gems import GEMS9  # noqa: E402
from commercial98k.manifest.schema import CLIP_SCHEMA  # noqa: E402
from commercial98k.taxonomy import load_taxonomy  # noqa: E402

WORDS = ("new", "sale", "spring", "limited", "gift", "best", "fresh", "smooth", "bright", "classic")
ERRORS = ("no music: fingerprint is silence", "MediaError: /data/videos/{i}.mp4: no video stream",
          "ERROR: [generic] {i}: HTTP Error 404")


def _map(keys: list[str], probs: np.ndarray) -> pa.Array:
    n, k = probs.shape
    offsets = pa.array(np.arange(0, n * k + 1, k, dtype=np.int32))
    return pa.MapArray.from_arrays(offsets, pa.array(np.tile(keys, n)), pa.array(probs.ravel(), pa.float32()))


def synthetic_chunk(start: int, n: int, rng: np.random.Generator, categories: list[str]) -> pa.Table:
    """``n`` realistic clips rows (ids from ``start``): 5 clips per video, 2 % stopped."""
    ids = np.arange(start, start + n)
    vid = ids // 5
    cat_idx = rng.integers(0, len(categories), n)
    crawl = np.array(categories)[cat_idx]
    cat_probs = rng.dirichlet(np.ones(len(categories)) * 0.5, n).astype(np.float32)
    pred = np.array(categories)[cat_probs.argmax(1)]
    emo = rng.dirichlet(np.ones(len(GEMS9)), n).astype(np.float32)
    words = np.array(WORDS)[rng.integers(0, len(WORDS), (n, 3))]
    title = [f"{c} {a} {b} ad {v}" for c, a, b, v in zip(crawl, words[:, 0], words[:, 1], vid, strict=True)]
    ocr = [f"{a.upper()} | {b} {c} | shop now {i % 997}" for a, b, c, i in zip(*words.T, ids, strict=True)]
    failed = rng.random(n) < 0.02
    status = np.where(failed, np.where(rng.random(n) < 0.5, "no_music", "failed"), "ok")
    error = [ERRORS[i % 3].format(i=v) if f else None for i, (f, v) in enumerate(zip(failed, vid, strict=True))]
    start_s = (ids % 5) * 10.0 + 1.0
    cols = {
        "video_id": [f"bench-v{v:07d}" for v in vid], "clip_id": [f"bench-v{v:07d}-c{i % 5:03d}" for v, i in
                                                                 zip(vid, ids, strict=True)],
        "platform": ["bench"] * n, "title": title, "category": crawl, "status": status, "error": error,
        "split_status": np.where(failed, status, "ok"), "split_error": error,
        "label_status": np.where(failed, None, "ok"), "fetch_status": ["ok"] * n,
        "video_path": [f"videos/bench-v{v:07d}.mp4" for v in vid], "duration_s": np.full(n, 55.0),
        "clip_start_s": start_s, "clip_end_s": start_s + 8.0, "has_music": ~failed,
        "music_id": [f"m-{(v * 7) % 200_000:012x}" for v in vid], "predicted_category": pred,
        "category_confidence": cat_probs[np.arange(n), cat_idx], "category_probs": _map(categories, cat_probs),
        "emotion": np.array(GEMS9)[emo.argmax(1)], "emotion_probs": _map(list(GEMS9), emo),
        "tags": [list(w) for w in words], "tag_sources": [["page", "ocr", "music"]] * n, "ocr_text": ocr,
    }
    arrays = [pa.array(cols[f.name], f.type) if f.name in cols and not isinstance(cols[f.name], pa.Array)
              else cols[f.name] if f.name in cols else pa.nulls(n, f.type) for f in CLIP_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=CLIP_SCHEMA)


def write_synthetic(path: Path, rows: int, seed: int = 0, chunk: int = 100_000) -> Path:
    """A ``rows``-row clips manifest at ``path``, written as ``manifest.write_manifest`` writes one
    (``pq.write_table``, zstd: one row group); kept between runs, rebuilt when its size differs."""
    if path.exists() and pq.ParquetFile(path).metadata.num_rows == rows:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    categories = load_taxonomy().ids()
    table = pa.concat_tables(synthetic_chunk(start, min(chunk, rows - start), rng, categories)
                             for start in range(0, rows, chunk))
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 120.0) -> tuple[float, dict]:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=timeout) as r:
        body = json.loads(r.read())
    return time.perf_counter() - t0, body


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--work", default=str(ROOT / "bench_work" / "browse"))
    args = ap.parse_args()
    work = Path(args.work)
    manifest = write_synthetic(work / "manifests" / "c98k.parquet", args.rows)
    (work / "data").mkdir(exist_ok=True)

    t0 = time.perf_counter()
    ref = pq.read_table(manifest, columns=READ_COLUMNS)
    ref_s = time.perf_counter() - t0
    del ref

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "pipelines.cli", "browse", "--manifest", str(manifest), "--data-root",
           str(work / "data"), "--port", str(port)]
    t0 = time.perf_counter()
    server = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while True:  # the port opens once Python, Starlette and uvicorn are loaded
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None:
                    raise SystemExit(f"error: the server exited: {server.stderr.read().decode()[-2000:]}") from None
                time.sleep(0.05)
        listen_s = time.perf_counter() - t0
        first_s, first = _get(f"{base}/api/clips?limit=60")  # streamed: the index starts building now
        open_s = time.perf_counter() - t0
        index_s, _ = _get(f"{base}/api/failures")  # waits for the index
        warm_s, counted = _get(f"{base}/api/clips?limit=60")
        filt_s, filt = _get(f"{base}/api/clips?limit=60&category=cosmetics&conf_min=0.2&conf_max=0.9"
                            f"&text=spring&sort=-confidence&offset=60")
        next_s, _ = _get(f"{base}/api/clips?limit=60&category=cosmetics&conf_min=0.2&conf_max=0.9"
                         f"&text=spring&sort=-confidence&offset=120")
        text_s, text = _get(f"{base}/api/clips?limit=60&text=spring")
        dis_s, dis = _get(f"{base}/api/clips?limit=60&disagree=true&emotion=power")
        fail_s, fails = _get(f"{base}/api/failures")
        rss = _rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    meta = pq.ParquetFile(manifest).metadata
    print(f"manifest: {args.rows:,} rows, {manifest.stat().st_size / 1e6:.0f} MB on disk, "
          f"{meta.num_row_groups} row group(s)")
    print(f"reference: pq.read_table of the {len(READ_COLUMNS)} index columns: {ref_s:.2f} s")
    print(f"open: server start -> first page of 60: {open_s:.2f} s (listening after {listen_s:.2f} s, "
          f"first page streamed in {first_s:.2f} s, {len(first['rows'])} rows) = {open_s / ref_s:.2f}x the reference")
    print(f"index of {counted['total']:,} rows ready {index_s:.2f} s after the first page "
          f"= {index_s / ref_s:.2f}x the reference")
    print(f"page again, counted (warm): {warm_s * 1000:.0f} ms")
    print(f"filtered page (category+confidence+text, sorted, page 2; {filt['total']:,} match): "
          f"{filt_s * 1000:.0f} ms = {filt_s / ref_s:.3f}x the reference")
    print(f"its next page (the filter's rows cached): {next_s * 1000:.0f} ms")
    print(f"free text alone ({text['total']:,} match): {text_s * 1000:.0f} ms = {text_s / ref_s:.3f}x the reference")
    print(f"disagreement + emotion page ({dis['total']:,} match): {dis_s * 1000:.0f} ms")
    print(f"failures view ({len(fails['groups'])} groups): {fail_s * 1000:.0f} ms")
    print(f"server RSS: {rss:.0f} MB")


if __name__ == "__main__":
    main()
