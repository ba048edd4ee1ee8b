"""`edgeport bench-serve`: the load generator's figures, and one short run against both servers."""
from __future__ import annotations

import json

import pytest

from edgeport.bench_serve_load import MALFORMED_KINDS, LoadSpec, Sample, _Requests, summarize


def test_summary_counts_good_and_malformed_apart(tmp_path):
    spec = LoadSpec(url="http://127.0.0.1:1/", images=[])
    samples = [Sample(0.0, 0.010, 200), Sample(0.1, 0.020, 200), Sample(0.2, 0.5, 503), Sample(0.3, 0.001, 0),
               Sample(0.4, 0.002, 400, "bad-json"), Sample(0.5, 0.002, 415, "unsupported-content-type"),
               Sample(1.5, 0.030, 200)]
    r = summarize(spec, samples, elapsed=2.0)
    assert (r.sent, r.good, r.ok) == (7, 5, 3)
    assert r.throughput_rps == 1.5  # 200s of good requests only
    assert r.statuses == {"200": 3, "503": 1, "0": 1}
    assert r.malformed == {"bad-json": {"400": 1}, "unsupported-content-type": {"415": 1}}
    assert r.latency_ms["p50"] == 20.0 and r.latency_ms["max"] == 30.0
    # thirds of the 2 s phase by start time: [0, 0.67) holds 10 and 20 ms, [1.33, 2] holds 30 ms
    assert r.p99_ms_by_third == {"first": pytest.approx(19.9, abs=0.1), "second": None, "third": 30.0}
    assert r.stalled == {} and r.stalled_hold_s == {}
    # stalled uploads: counted by the server's answer apart from the requests, with how long each was held
    r = summarize(spec, samples, elapsed=2.0, stalled=[(408, 5.1), (408, 5.3), (503, 0.01), (0, 15.0)])
    assert r.stalled == {"408": 2, "503": 1, "0": 1} and r.statuses == {"200": 3, "503": 1, "0": 1}
    assert r.stalled_hold_s == {"median": 5.1, "max": 5.3}  # of those the server answered


def test_a_keep_alive_connection_the_server_closed_is_reopened_not_counted_lost(faces_dir):
    """A server that closes idle keep-alive connections after 0.05 s, and open load slow enough
    that each client's connection idles past it: every request is answered, none counted as
    lost (``status 0``), as with urllib3, which checks a connection before reusing it."""
    import http.server
    import threading

    from edgeport.bench_serve_load import run_load

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive
        timeout = 0.05  # an idle connection is closed after 0.05 s, without a word

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        image = str(sorted(faces_dir.rglob("*.jpg"))[0])
        result = run_load(LoadSpec(url=f"http://127.0.0.1:{server.server_address[1]}/", images=[image], mode="open",
                                   rate=5, duration_s=2, max_in_flight=1, timeout_s=5))
    finally:
        server.shutdown()
        server.server_close()
    assert result.good >= 9 and result.statuses == {"200": result.good}, result.statuses


def test_malformed_requests_come_in_every_kind_at_the_asked_share(faces_dir):
    image = sorted(faces_dir.rglob("*.jpg"))[0]
    source = _Requests(LoadSpec(url="", images=[str(image)], malformed_fraction=0.3, seed=3))
    kinds = [source.next()[2] for _ in range(2000)]
    bad = [k for k in kinds if k is not None]
    assert set(bad) == set(MALFORMED_KINDS)
    assert 0.25 < len(bad) / len(kinds) < 0.35
    body, headers, kind = _Requests(LoadSpec(url="", images=[str(image)])).next()
    assert kind is None and body == image.read_bytes() and headers["Content-Type"] == "image/jpeg"


def test_bench_serve_runs_both_servers_and_judges_the_targets(validated_tiny, faces_dir, tmp_path):
    from edgeport.cli import main

    out = tmp_path / "bench-serve"
    assert main(["bench-serve", str(validated_tiny), "--variant", "onnx-fp32", "--images", str(faces_dir),
                 "--concurrency", "1,2", "--duration-s", "1", "--out", str(out)]) == 0
    result = json.loads((out / "bench-serve.json").read_text())
    ours = result["edgeport"]
    assert result["served"]["variant"] == "onnx-fp32" and result["served"]["decode"] == "exact"
    assert "decode exact" in (out / "bench-serve.md").read_text().splitlines()[0]
    assert ours["sweep"]["2"]["ok"] > 0 and ours["sweep"]["2"]["ok"] == ours["sweep"]["2"]["good"]
    assert ours["capacity_rps"] == max(ours["sweep"][c]["throughput_rps"] for c in ("1", "2"))
    # 90%, 75%, ... of the best, until a phase had no error and the generator started every request
    # (on a busy machine it may not keep up with a rate: a phase the server did not fail, but not
    # the rate asked either)
    tried = ours["sustained"]["tried"]
    assert tried[0]["share"] == 0.9 and all(t["errors"] > 0 or t["client_saturated"] > 0 for t in tried[:-1])
    assert (tried[-1]["errors"] == 0 and tried[-1]["client_saturated"] == 0) or len(tried) == 4
    assert ours["sustained"]["spec"]["rate"] == pytest.approx(tried[-1]["share"] * ours["capacity_rps"], abs=0.01)
    assert ours["overload"]["spec"]["rate"] == pytest.approx(2 * ours["sustained"]["spec"]["rate"], abs=0.02)
    # the overload unjudged first until the memory settles (the climb to its ceiling), then judged:
    # every warm-up but the last grew by more than half the limit
    from edgeport.bench_serve import MEMORY_GROWTH_LIMIT, OVERLOAD_WARMUPS

    warmups = ours["overload"]["warmups"]
    assert 1 <= len(warmups) <= OVERLOAD_WARMUPS and all(w["good"] > 0 for w in warmups)
    grew = [w["server_memory"]["last_quarter_mb"] / w["server_memory"]["first_quarter_mb"] - 1 for w in warmups]
    assert all(g > MEMORY_GROWTH_LIMIT / 2 for g in grew[:-1])
    assert len(warmups) == OVERLOAD_WARMUPS or grew[-1] <= MEMORY_GROWTH_LIMIT / 2
    starts = [ours["sustained"]["started_at"], *(w["started_at"] for w in warmups), ours["overload"]["started_at"]]
    assert starts == sorted(starts)
    # bad requests: each kind answered 4xx (or 503 when busy), never a crash, and the server lived on
    malformed = ours["malformed"]
    assert malformed["malformed"] and all(k.startswith("4") or k == "503"
                                          for statuses in malformed["malformed"].values() for k in statuses)
    assert malformed["server_alive_after"] and malformed["workers_unchanged"]
    # 64 stalled uploads held open beside them: answered 408/503 by the server, or cut by the phase's end
    assert malformed["spec"]["stalled_uploads"] == 64 and sum(malformed["stalled"].values()) >= 64
    assert set(malformed["stalled"]) <= {"0", "408", "503"}
    assert result["handwritten"]["sweep"]["2"]["ok"] > 0
    # at each concurrency the runner alone, then the two servers' closed loops in turn; then
    # edgeport's open-loop phases
    theirs, beside = result["handwritten"]["sweep"], result["runner_alone"]["beside"]
    order = [beside["1"], ours["sweep"]["1"], theirs["1"], beside["2"], ours["sweep"]["2"], theirs["2"],
             ours["sustained"], ours["malformed"]]
    assert [p["started_at"] for p in order] == sorted(p["started_at"] for p in order)
    targets = {t["target"].split(",")[0]: t for t in result["targets"]}
    # the ratio at 1 and 2 clients, the share at 2 (not at 1), three load phases
    assert len(result["targets"]) == 6 and all(t["met"] in (True, False) for t in result["targets"])
    ratio = ours["sweep"]["2"]["throughput_rps"] / result["handwritten"]["sweep"]["2"]["throughput_rps"]
    assert targets["throughput >= 5x the hand-written server"]["met"] == (ratio >= 5)
    # the served runner alone, in the same run, on the server's cores with its threads (issue #35)
    alone, settings = result["runner_alone"], result["settings"]
    assert alone["variant"] == "onnx-fp32" and alone["threads"] == settings["threads"]
    assert settings["server_cores"] == "all" or alone["cores"] == settings["server_cores"]
    for key in ("batch_1", "max_batch", "request"):
        assert alone[key]["images_per_s"] > 0 and alone[key]["ms_per_image"] > 0
    assert (alone["batch_1"]["batch"], alone["max_batch"]["batch"]) == (1, 8)
    assert alone["request"]["decode_preprocess_ms"] > 0 and alone["request"]["runner_ms"] > 0
    # 2 clients: against the runner alone at batch 2, measured just before their phase
    assert (beside["1"]["batch"], beside["2"]["batch"]) == (1, 2) and beside["2"]["images_per_s"] > 0
    assert {name: [len(r) for r in by_c.values()] for name, by_c in result["closed_loop_rounds"].items()} == \
        {"runner alone": [1, 1], "edgeport": [1, 1], "hand-written": [1, 1]}  # --rounds 1
    share = alone["server_share"]["2"]
    assert share["batch"] == 2 and share["runner_images_per_s"] == beside["2"]["images_per_s"]
    assert share["server_rps"] == ours["sweep"]["2"]["throughput_rps"]
    assert share["share"] == pytest.approx(share["server_rps"] / beside["2"]["images_per_s"], abs=1e-3)
    assert targets["throughput >= 60% of the runner alone"]["met"] == (share["share"] >= 0.6)
    md = (out / "bench-serve.md").read_text()
    assert "| 2 |" in md and "hand-written" in md and "overload" in md
    mem = warmups[0]["server_memory"]
    assert f"warm-up phases {mem['first_quarter_mb']} -> {mem['last_quarter_mb']} MB" in md
    assert "## Runner alone" in md
    assert f"| runner, batch 8 (the server's max batch) | {alone['max_batch']['images_per_s']:.1f} |" in md


def test_runner_share_compares_each_concurrency_with_the_largest_batch_its_clients_make():
    from edgeport.bench_serve import compared_batch, ratio_target, runner_shares, share_targets

    # one image per client, up to the max batch; a server that never batches: batch 1 throughout
    assert [compared_batch(c, 8) for c in (1, 2, 4, 8, 16)] == [1, 2, 4, 8, 8]
    assert [compared_batch(c, 1) for c in (1, 4, 16)] == [1, 1, 1]
    served = {"1": [{"throughput_rps": 50.0}], "4": [{"throughput_rps": 120.0}], "16": [{"throughput_rps": 200.0}]}
    # each against the runner alone measured just before its own phase
    beside = {"1": [{"batch": 1, "images_per_s": 80.0}], "4": [{"batch": 4, "images_per_s": 250.0}],
              "16": [{"batch": 8, "images_per_s": 240.0}]}
    shares = runner_shares(served, beside)
    assert {c: (s["batch"], round(s["share"], 3)) for c, s in shares.items()} == {"1": (1, 0.625), "4": (4, 0.48),
                                                                                   "16": (8, 0.833)}
    # targets with more than one client (issue #35: 4 and 16); 1 client's share is reported, not judged
    rows = share_targets(shares)
    assert [r["met"] for r in rows] == [False, True]  # 48% is under the 60% target
    assert rows[0]["target"].endswith("concurrency 4 (against batch 4)") and rows[0]["value"].endswith("= 48.0%")
    assert share_targets({"2": {"batch": 2, "server_rps": 0.0, "runner_images_per_s": 0.0, "share": None}})[0]["met"] \
        is None
    # against the hand-written server: 3.5x at 1 client, 5x with more
    assert ratio_target(1) == 3.5 and ratio_target(4) == ratio_target(16) == 5.0
    # judged exactly: 59.96% is not 60%, though it prints as 60.0% at one decimal
    close = share_targets(runner_shares({"4": [{"throughput_rps": 599.6}]}, {"4": [{"batch": 4, "images_per_s": 1000.0}]}))
    assert close[0]["met"] is False


def test_rounds_are_judged_on_their_median_round_of_ratios_and_shares():
    from edgeport.bench_serve import median_index, median_round, runner_shares, server_ratios

    assert median_round([{"x": 3}, {"x": 1}, {"x": 2}], "x") == {"x": 2}
    assert median_round([{"x": 4}, {"x": 1}, {"x": 3}, {"x": 2}], "x") == {"x": 2}  # even: the lower middle one
    assert median_index([5.0, 4.1, 4.4]) == 2 and median_index([7.0]) == 0
    # three rounds at 4 clients: each ratio compares the two servers' phases of the same round
    ours = {"4": [{"throughput_rps": 700.0}, {"throughput_rps": 500.0}, {"throughput_rps": 650.0}]}
    theirs = {"4": [{"throughput_rps": 140.0}, {"throughput_rps": 90.0}, {"throughput_rps": 160.0}]}
    ratio = server_ratios(ours, theirs)["4"]  # 5.0x, 5.56x, 4.06x: the median round is the first
    assert (ratio["server_rps"], ratio["handwritten_rps"], ratio["ratio"], ratio["round"]) == (700.0, 140.0, 5.0, 0)
    assert [round(x, 2) for x in ratio["ratio_by_round"]] == [5.0, 5.56, 4.06]
    alone = {"4": [{"batch": 4, "images_per_s": 1000.0}, {"batch": 4, "images_per_s": 800.0},
                   {"batch": 4, "images_per_s": 1300.0}]}
    share = runner_shares(ours, alone)["4"]  # 70%, 62.5%, 50%: the median round is the second
    assert (share["server_rps"], share["runner_images_per_s"], share["share"], share["round"]) == (500.0, 800.0, 0.625, 1)
    assert len(share["share_by_round"]) == 3
    # one round: no per-round lists
    assert "ratio_by_round" not in server_ratios({"4": ours["4"][:1]}, {"4": theirs["4"][:1]})["4"]


def test_bench_serve_refuses_an_unvalidated_folder(exported_copy, capsys):
    from edgeport.cli import main

    assert main(["bench-serve", str(exported_copy), "--duration-s", "1"]) == 2
    assert "edgeport validate" in capsys.readouterr().err
