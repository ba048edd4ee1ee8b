"""The `edgeport` command line: export, validate, export-all, gate, bench, matrix, init, backends, serve,
bench-serve; built on edgeport.api where a Python call exists."""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

# Keep TensorFlow out of `import transformers`, and its C++ logs quiet, in every process.
os.environ.setdefault("USE_TF", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from edgeport import __version__  # noqa: E402
from edgeport.config import Config, ConfigError, load_config  # noqa: E402
from edgeport.model_source import ModelSourceError, resolve_source  # noqa: E402
from edgeport.variants import DEFAULT_VARIANTS, FULL_INTEGER_ACTIVATIONS, VARIANTS, default_variants  # noqa: E402
from edgeport.serving.settings import ServeSettings  # noqa: E402
from edgeport.validation.preprocess import DECODE_MODES  # noqa: E402
from edgeport.validation.subgroups import SubgroupSpec  # noqa: E402

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
CONFIG_DEFAULT = "./edgeport.toml in the working folder, else the defaults"  # every --config's default

DESCRIPTION = """\
Export a Hugging Face image classifier to ONNX, TFLite and TF SavedModel (ExecuTorch, OpenVINO
and Core ML on request), run every variant and the PyTorch reference on the same evaluation
images, gate on budgets, hand the TFLite files to app teams and serve the validated file.

Exit status: 0 all variants within budget, 1 a variant failed or missed its budget,
2 bad input (config, model, evaluation folder)."""

VARIANT_HELP = "\n".join(f"  {name:<17} {spec.description}" + ("" if spec.default else " [opt-in]")
                         for name, spec in VARIANTS.items()) + (
    "\n[opt-in]: not in the default list; name it in --variants or the config's variants")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.func(args)
    except (ConfigError, ModelSourceError, FileNotFoundError, ValueError) as exc:
        print(f"edgeport: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("edgeport: interrupted; finished artifacts are kept, partial ones were discarded", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeport", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"edgeport {__version__}")
    sub = parser.add_subparsers(metavar="COMMAND")

    p = sub.add_parser(
        "export", help="convert one model to its variants",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Convert MODEL to its variants (ONNX, TFLite, SavedModel; ExecuTorch, OpenVINO, Core ML on "
                    "request) and write manifest.json.\n\n"
                    "MODEL is a model name from the config, a local Hugging Face model folder\n"
                    "(config.json, model.safetensors, preprocessor_config.json), or a hub id\n"
                    "with --revision.\n\nVariants:\n" + VARIANT_HELP,
    )
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--out", type=Path, help="output folder (default: ARTIFACTS/<model name>)")
    p.add_argument("--revision", help="hub commit to pin (required for hub ids)")
    p.add_argument("--variants", help=f"comma-separated variants (default: those of {','.join(DEFAULT_VARIANTS)} "
                                      "whose backend is installed; `edgeport backends` says which are)")
    p.add_argument("--calibration", type=Path,
                   help="folder of real images (any depth) that calibrates the int8 variants; must not "
                        "overlap the evaluation set (default: the model's 'calibration' from the config)")
    p.add_argument("--images", type=Path,
                   help="folder of real images for onnx2tf's own check sample (default: the calibration folder, "
                        "else the model's eval folder, else a generated sample: float variants need no images)")
    p.add_argument("--full-integer-activations", choices=FULL_INTEGER_ACTIVATIONS,
                   help="activations of tflite-int8 and tflite-int8-io: int8, or int16 (TFLite's 16x8 mode, "
                        "for models whose int8 activations miss the agreement budget; int8-only NPUs cannot "
                        "run it) (default: the model's full_integer_activations in the config, else int8; "
                        "with int8, the precision search raises single ops to int16 where the budget needs it)")
    p.add_argument("--input-size", metavar="HxW", type=_input_size,
                   help="the input size, for a model whose image processor does not fix one (a shortest-edge "
                        "resize without a crop): the exported files take HxW, and the app resizes to it "
                        "(default: the model's input_size in the config)")
    p.add_argument("--decode", choices=DECODE_MODES,
                   help="how images are decoded for this model, in calibration, validation and serving alike: "
                        "exact (every pixel, as transformers' processors get them) or draft (a JPEG at the reduced "
                        "DCT scale that keeps it at least twice the resize size: a 12-megapixel photo in a sixth of "
                        "the time; the report measures what it changes) (default: the model's decode in the config, "
                        "else exact)")
    p.add_argument("--no-precision-search", action="store_true",
                   help="make the calibrated int8 variants (onnx-int8-static, tflite-int8, tflite-int8-io, "
                        "executorch-int8; openvino-int8 gets plain NNCF quantization) all-int8 instead of "
                        "raising their most sensitive layers until the held-out "
                        "calibration images meet the int8 budget (default: search, as the config's "
                        "precision_search = true)")
    p.add_argument("--config", type=Path, help=f"config file (default: {CONFIG_DEFAULT})")
    _add_export_options(p)
    p.add_argument("--no-progress", action="store_true", help="no heartbeat lines during long steps")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "validate", help="run every exported variant on an evaluation set and gate on budgets",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run the PyTorch reference and every variant in DIR/manifest.json on the images\n"
                    "in EVAL_DIR/CLASS/*.jpg (class folders named like the model's labels, any case),\n"
                    "write DIR/report.json, report.md, report.html and the mobile bundle DIR/mobile/,\n"
                    "and exit 1 if any variant misses its budget or too many images are unreadable.\n"
                    "Budgets come from the config (by model name, else the defaults).",
    )
    p.add_argument("dir", type=Path, metavar="DIR", help="folder written by `edgeport export`")
    p.add_argument("--eval", type=Path, required=True, metavar="EVAL_DIR", help="evaluation set in class folders")
    p.add_argument("--config", type=Path, help=f"config file with budgets (default: {CONFIG_DEFAULT})")
    p.add_argument("--latency-runs", type=int, help="timed batch-1 runs per variant (default from config: 20)")
    p.add_argument("--label-map", action="append", default=[], metavar="FOLDER=LABEL",
                   help="read class folder FOLDER as LABEL, or FOLDER=ignore to leave it out (repeatable; "
                        "adds to the model's [models.label_map] in the config)")
    g = p.add_argument_group(
        "subgroups", "accuracy and drift per subgroup of the evaluation set, judged against max_subgroup_drop "
                     "(default: the model's [models.subgroups] in the config; these options replace its parts)")
    g.add_argument("--subgroup-pattern", metavar="REGEX",
                   help=r"regular expression with named groups, searched in each file name, e.g. "
                        r"'^(?P<age>\d+)_(?P<gender>\d)_(?P<race>\d)_' (UTKFace)")
    g.add_argument("--subgroup-manifest", type=Path, metavar="FILE",
                   help="CSV (header: file, then one column per attribute) or JSON ({FILE: {COLUMN: value}}); "
                        "FILE is the image's path under EVAL_DIR or its file name")
    g.add_argument("--subgroup-values", action="append", default=[], metavar="ATTR=RAW:NAME,...",
                   help="name an attribute's raw values, e.g. race=0:white,1:black (repeatable)")
    g.add_argument("--subgroup-bins", action="append", default=[], metavar="ATTR=EDGE,...",
                   help="bin a numeric attribute by its lower edges, e.g. age=0,10,20,40,60 (repeatable)")
    g.add_argument("--subgroup-attributes", metavar="A,B", help="the attributes to report (default: all)")
    g.add_argument("--min-subgroup-size", type=int, metavar="N",
                   help="smaller subgroups are reported but not judged (default 100)")
    g.add_argument("--no-subgroups", action="store_true", help="ignore the config's subgroups")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser(
        "export-all", help="export and validate every model in the config",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="For every [[models]] entry in the config: export its variants into\n"
                    "ARTIFACTS/<name>/ and validate them on its eval folder. Exit 1 if any variant\n"
                    "of any model failed or missed its budget (the others are still produced).",
    )
    p.add_argument("--config", type=Path, help=f"config file (default: {CONFIG_DEFAULT})")
    p.add_argument("--out-root", type=Path, help="artifacts folder (default: from the config, 'artifacts')")
    p.add_argument("--eval", action="append", default=[], metavar="NAME=DIR",
                   help="evaluate model NAME on DIR instead of its configured eval folder (repeatable)")
    p.add_argument("--only", action="append", default=[], metavar="NAME", help="only this model (repeatable)")
    p.add_argument("--shard", metavar="K/N",
                   help="only the models of shard K of N (K = 1..N), for N CI runners: a model's shard depends "
                        "on its name alone, so adding a model moves no other; with --only, the models in both")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bars, and no heartbeat lines during long export steps")
    _add_export_options(p)
    p.set_defaults(func=cmd_export_all)

    p = sub.add_parser(
        "gate", help="fail on missed budgets, unreadable images, or regressions against a baseline report",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Read each REPORT (a report.json, or the folder holding it; default: the report of\n"
                    "every model in the config) and exit 1 with one line per reason when a variant\n"
                    "missed its budget or failed, when more than [settings] max_skipped_fraction of\n"
                    "the evaluation images could not be read, or (with --baseline) when a variant's\n"
                    "accuracy or agreement dropped by more than [gate] max_accuracy_regression /\n"
                    "max_agreement_regression points against the baseline (for example the reports\n"
                    "saved from the main branch).\n\n"
                    "A REPORT folder without a report.json of its own is searched below for every\n"
                    "<model>/report.json (e.g. the downloaded artifacts of `export-all --shard K/N`\n"
                    "runners) and gated as one: exit 1 also for each configured model with no report\n"
                    "among them, exit 2 when two reports hold the same model or a folder holds none.",
    )
    p.add_argument("reports", type=Path, nargs="*", metavar="REPORT")
    p.add_argument("--expect-config", action=argparse.BooleanOptionalAction, default=None,
                   help="fail for every model in the config that no REPORT covers (default: on when a REPORT "
                        "folder was searched for reports, off for report.json files and model folders)")
    p.add_argument("--baseline", type=Path, metavar="OLD",
                   help="a report.json, or a folder holding report.json or <model>/report.json")
    p.add_argument("--config", type=Path, help=f"config file with the margins (default: {CONFIG_DEFAULT})")
    p.add_argument("--max-accuracy-regression", type=float, metavar="POINTS", help="override [gate]")
    p.add_argument("--max-agreement-regression", type=float, metavar="POINTS", help="override [gate]")
    p.set_defaults(func=cmd_gate)

    p = sub.add_parser(
        "bench", help="benchmark export time, memory and latency on a ViT-B/16 (random weights)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Build a ViT-B/16 with random weights (the architecture of\n"
                    "rizvandwiki/gender-classification; latency only), measure this machine's fp32 and\n"
                    "int8 compute floors for it, export every variant with each\n"
                    "step in its own process (wall time, peak memory), time each variant at batch 1\n"
                    "and batch 8 next to PyTorch eager, run the plain tools (optimum-cli, onnx2tf\n"
                    "defaults) on the same model, and time validation of a bundled model. Writes\n"
                    "OUT/bench.json and OUT/bench.md with every figure against its target.",
    )
    p.add_argument("--config", type=Path, help=f"config file (default: {CONFIG_DEFAULT})")
    p.add_argument("--out", type=Path, help="output folder (default: ARTIFACTS/bench; replaced)")
    p.add_argument("--arch", default="vit-b16", choices=["vit-b16", "tiny"], help="model to build (default vit-b16)")
    p.add_argument("--variants", help="comma-separated variants (default: all)")
    p.add_argument("--calibration", type=Path,
                   help="real images for calibration and onnx2tf's sample (default: the validated model's, "
                        "else the first configured calibration folder)")
    p.add_argument("--runs", type=int, default=20, help="timed batch-1 runs per variant (default 20)")
    p.add_argument("--no-baseline", action="store_true", help="skip the plain optimum-cli + onnx2tf run")
    p.add_argument("--search-cost", action="store_true",
                   help="also time onnx-int8-static's precision search: a second export of the model with a probe "
                        "head fitted on the evaluation images (needs --validate-eval or the model's eval folder; "
                        "on ViT-B/16, minutes per search round)")
    p.add_argument("--validate-model", metavar="NAME",
                   help="bundled model whose validation is timed (default: the config's first; 'none' to skip)")
    p.add_argument("--validate-eval", type=Path, metavar="DIR",
                   help="evaluation set for that timing (default: the model's eval folder; the target is "
                        "stated for 2000 images, e.g. ../shared/datasets/utkface/eval)")
    p.add_argument("--no-progress", action="store_true", help="no heartbeat lines during long export steps")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser(
        "matrix", help="export and validate a small model of every supported architecture -> docs/compatibility.md",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="For every architecture in edgeport/architectures.py (every image-classification model\n"
                    "type transformers maps, but those its LEFT_OUT names with a reason): build a\n"
                    "small model, train it briefly on real faces (seeded) so its outputs spread like a real\n"
                    "model's, export every variant, validate it with the config's budgets, and write\n"
                    "OUT/matrix.json and the Markdown page (default docs/compatibility.md). A benchmark\n"
                    "command: about a minute per architecture on 2 cores.",
    )
    p.add_argument("--config", type=Path, help=f"config file with budgets (default: {CONFIG_DEFAULT})")
    p.add_argument("--out", type=Path, help="work folder (default: ARTIFACTS/matrix)")
    p.add_argument("--arch", help="comma-separated architectures (default: all)")
    p.add_argument("--variants", help="comma-separated variants (default: all)")
    p.add_argument("--eval", type=Path, help="evaluation set in class folders (default: the first model's eval)")
    p.add_argument("--calibration", type=Path, help="calibration images (default: the first model's calibration)")
    p.add_argument("--train-dir", type=Path, default=Path("../shared/datasets/utkface/train"),
                   help="class folders of training images, disjoint from --eval (default: %(default)s, "
                        "relative to the config's folder)")
    p.add_argument("--train-steps", type=int, default=600, help="training steps per architecture (default 600)")
    p.add_argument("--random-weights", action="store_true", help="skip the training (agreement then says little)")
    p.add_argument("--doc", type=Path, help="where to write the page (default: docs/compatibility.md; 'none' to skip)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars or heartbeat lines")
    p.set_defaults(func=cmd_matrix)

    p = sub.add_parser(
        "serve", help="serve a validated variant over HTTP (Hugging Face Inference API shape, OIP v2)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Serve one variant of MODEL_DIR (an `edgeport export` folder that `edgeport validate` has\n"
                    "judged) over HTTP. Without --variant: the fastest variant that passed its budget in\n"
                    "report.json. Refuses a variant that failed validation or whose file no longer has the\n"
                    "manifest's sha256.\n\n"
                    "Routes: POST / and POST /models/NAME (raw image bytes, or JSON {\"inputs\": \"<base64>\",\n"
                    "\"parameters\": {\"top_k\": 5, \"function_to_apply\": \"softmax\"}} -> [{\"label\", \"score\"}]);\n"
                    "GET /health, /metadata, /metrics (Prometheus); Open Inference Protocol v2: GET /v2,\n"
                    "/v2/health/live, /v2/health/ready, /v2/models/NAME, /v2/models/NAME/ready and\n"
                    "POST /v2/models/NAME/infer (BYTES base64 images or FP32 pixel values in, logits out).\n\n"
                    "Requests are batched: up to --max-batch images within --max-wait-ms; at most\n"
                    "--max-queue images wait (beyond: 503 with Retry-After); one that waits longer than\n"
                    "--timeout-s gets 504. SIGTERM (or Ctrl-C) finishes in-flight requests, then exits.\n\n"
                    "Slow or stalled clients cannot starve the others: a request takes one of the\n"
                    "--max-queue places only once its body has arrived. Until then it is one of at most\n"
                    "--max-uploads uploads (beyond: 503), and its body must arrive within --body-timeout-s\n"
                    "and no slower than --min-body-rate-kb after the first --body-grace-s (else 408, and\n"
                    "the connection is closed). Headers must be complete within --header-timeout-s (else\n"
                    "408), an idle kept-alive connection is closed after --keep-alive-s, and connections\n"
                    "beyond --max-connections get 503. GET /metadata shows every limit under \"limits\".",
    )
    p.add_argument("model_dir", type=Path, metavar="MODEL_DIR", help="e.g. artifacts/gender-vit")
    p.add_argument("--variant", help="variant to serve (default: the fastest that passed validation)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s: this machine only; "
                   "0.0.0.0 to accept connections from others)")
    p.add_argument("--port", type=int, default=8080, help="port (default %(default)s)")
    p.add_argument("--workers", type=int, default=1, help="server processes, each with its own runner (default 1)")
    p.add_argument("--threads", type=int, help="threads per runner (default: the config's [settings] threads)")
    p.add_argument("--max-batch", type=int, default=ServeSettings.max_batch,
                   help="images per inference batch at most (default %(default)s)")
    p.add_argument("--max-wait-ms", type=float, default=ServeSettings.max_wait_ms,
                   help="how long the first image of a batch waits for others (default 0: a batch is what "
                        "queued while the previous one ran)")
    p.add_argument("--max-queue", type=int,
                   help="inference requests in the server at once, and images queued, at most; beyond: 503 "
                        "(default: about 2 s of work at the variant's validated batch-1 latency, at least "
                        "2x --max-batch, at most 64)")
    p.add_argument("--max-body-mb", type=float, default=ServeSettings.max_body_mb,
                   help="largest request body; beyond: 413 (default %(default)s)")
    p.add_argument("--timeout-s", type=float, default=ServeSettings.timeout_s,
                   help="longest wait for a result; beyond: 504 (default %(default)s)")
    p.add_argument("--max-uploads", type=int, default=ServeSettings.max_uploads,
                   help="requests whose body is still arriving, at most; beyond: 503 with Retry-After (default "
                        "%(default)s; memory for bodies is at most this times --max-body-mb)")
    p.add_argument("--body-timeout-s", type=float, default=ServeSettings.body_timeout_s,
                   help="a request body must arrive within this many seconds of its headers; else 408 and the "
                        "connection is closed (default %(default)s)")
    p.add_argument("--min-body-rate-kb", type=float, default=ServeSettings.min_body_rate_kb,
                   help="after --body-grace-s, a body must arrive at this many KB/s at least; else 408 and the "
                        "connection is closed (default %(default)s; 0: no floor)")
    p.add_argument("--body-grace-s", type=float, default=ServeSettings.body_grace_s,
                   help="seconds a body may take before --min-body-rate-kb applies; also how long the rest of "
                        "a body is read and dropped after an answer sent before it arrived (a 503, a 405), "
                        "before the connection is closed (default %(default)s)")
    p.add_argument("--header-timeout-s", type=float, default=ServeSettings.header_timeout_s,
                   help="a request's headers must be complete within this many seconds of the connection "
                        "opening (or of the request's first byte on a kept-alive connection); else 408 and the "
                        "connection is closed (default %(default)s)")
    p.add_argument("--keep-alive-s", type=float, default=ServeSettings.keep_alive_s,
                   help="an idle kept-alive connection is closed after this many seconds (uvicorn's "
                        "timeout_keep_alive; default %(default)s)")
    p.add_argument("--max-connections", type=int, default=ServeSettings.max_connections,
                   help="open connections per worker, at most; beyond: 503 and closed at once (default "
                        "%(default)s; keep it under the process's open-file limit)")
    p.add_argument("--config", type=Path, help=f"config file for the thread count (default: {CONFIG_DEFAULT})")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "bench-serve", help="load-test `edgeport serve` against a hand-written PyTorch server -> bench-serve.md",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="First time the served variant's runner alone, on the server's cores with its\n"
                    "--threads (batch 1, the server's --max-batch, and decode + preprocess + runner per\n"
                    "image). Then start `edgeport serve` on MODEL_DIR (a validated export folder) and\n"
                    "drive it from a separate process on loopback (pinned to the last core, the servers\n"
                    "to the others): at each --concurrency, the runner alone again at the largest batch\n"
                    "its clients can make (the server's throughput is read as a share of it), then\n"
                    "closed-loop throughput and p50/p90/p99, then the same phase on a hand-written\n"
                    "FastAPI + transformers pipeline server (PyTorch, one request at a time, same\n"
                    "weights, same cores). Then open load at the highest rate it sustains without an\n"
                    "error (90%, 75%, 60% or 45% of the best throughput), at twice that (503s, bounded\n"
                    "p99, flat memory; run unjudged first until memory settles), and at half the best\n"
                    "with 10% malformed requests (every good request answered, every bad one 4xx, no\n"
                    "worker lost).\n"
                    "Every phase is bounded in time and in requests in flight.\n"
                    "With --arch instead of MODEL_DIR: a random ViT (probe head fitted on --eval, or\n"
                    "--random-head) is exported (onnx-fp32 and -int8-dynamic, openvino-fp32 and -int8,\n"
                    "calibrated on the config's first model's images) and validated first.\n"
                    "Writes OUT/bench-serve.json and OUT/bench-serve.md. A benchmark command: minutes,\n"
                    "not a test.",
    )
    p.add_argument("model_dir", type=Path, nargs="?", metavar="MODEL_DIR", help="e.g. artifacts/gender-vit")
    p.add_argument("--arch", choices=["vit-b16", "tiny"], help="build, export and validate this model instead")
    p.add_argument("--eval", type=Path, metavar="DIR",
                   help="with --arch: labelled images (female/male class folders) for its probe head and "
                        "validation (default: the config's first model's eval folder)")
    p.add_argument("--random-head", action="store_true",
                   help="with --arch: keep the random classifier (near-constant logits, so the int8 files pass "
                        "validation trivially: throughput only) instead of a probe head fitted on --eval")
    p.add_argument("--variant", help="variant to serve (default: the fastest that passed validation)")
    p.add_argument("--images", type=Path, metavar="DIR", help="images to send (default: the model's evaluation set)")
    p.add_argument("--out", type=Path, help="output folder (default: ARTIFACTS/bench-serve/<model>)")
    p.add_argument("--concurrency", default="1,4,16", help="closed-loop client counts (default %(default)s)")
    p.add_argument("--duration-s", type=float, default=15.0, help="seconds per load phase (default %(default)s)")
    p.add_argument("--rounds", type=int, default=1,
                   help="closed-loop rounds: at each concurrency the runner alone and both servers' phases run "
                        "this many times in turn, and each target judges the median round's ratio and share "
                        "(default %(default)s; 3 or 5 on a noisy machine)")
    p.add_argument("--threads", type=int, help="threads per runner, both servers (default: the config's)")
    p.add_argument("--workers", type=int, default=1, help="edgeport serve --workers (default 1)")
    p.add_argument("--max-batch", type=int, default=8, help="edgeport serve --max-batch (default 8)")
    p.add_argument("--max-wait-ms", type=float, default=0.0, help="edgeport serve --max-wait-ms (default 0)")
    p.add_argument("--max-queue", type=int, help="edgeport serve --max-queue (default: the server's own)")
    p.add_argument("--no-baseline", action="store_true", help="skip the hand-written PyTorch server")
    p.add_argument("--no-pin", action="store_true",
                   help="let servers and load generator share every core (default: the load generator on the "
                        "last core, the servers on the others, with at most that many threads)")
    p.add_argument("--config", type=Path, help=f"config file (default: {CONFIG_DEFAULT})")
    p.set_defaults(func=cmd_bench_serve)
    p = sub.add_parser(
        "init", help="write a starter edgeport.toml in the current folder",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Write ./edgeport.toml for MODEL (a local Hugging Face model folder, or a hub id with\n"
                    "--revision): its evaluation and calibration folders and the default budgets, each\n"
                    "commented. Then `edgeport export-all`, `gate`, `bench` and `serve` work from this\n"
                    "folder. Refuses to replace an existing edgeport.toml unless --force.",
    )
    p.add_argument("model", metavar="MODEL", nargs="?", default="models/my-model",
                   help="model folder or hub id (default: %(default)s, to edit)")
    p.add_argument("--name", help="the model's name in the config and under artifacts/ (default: MODEL's last part)")
    p.add_argument("--revision", help="hub commit to pin (needed for a hub id)")
    p.add_argument("--eval", default="data/eval", help="evaluation images in class folders (default: %(default)s)")
    p.add_argument("--calibration", default="data/calib",
                   help="real images for the int8 variants, disjoint from --eval (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="replace an existing edgeport.toml")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser(
        "distill", help="distill a model too big for the device into an edge-sized student, then compare the two",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train an edge-sized student to reproduce TEACHER's outputs on your images, and write it\n"
                    "to OUT as an ordinary Hugging Face model folder (config.json with the teacher's labels,\n"
                    "model.safetensors, preprocessor_config.json), which `edgeport export`, `validate`, the\n"
                    "gate, the mobile bundle and `serve` take like any model.\n\n"
                    "TEACHER is what `export` takes: a model name from the config, a local model folder, or a\n"
                    "hub id with --revision. --images: images of the deployment domain, any depth; if they sit\n"
                    "in folders named like the teacher's labels, the labels are learned too. The teacher's\n"
                    "outputs are computed once and cached by content; training stops when the agreement with\n"
                    "the teacher on held-out images stops improving, or at --max-steps or --minutes; a killed\n"
                    "run resumes from its last checkpoint; a rerun with the same inputs reuses the student.\n\n"
                    "OUT/distill.json and distill.md compare teacher and student on --eval (accuracy,\n"
                    "agreement, per subgroup as in validate), their parameters, file sizes and latency on\n"
                    "--latency-variants measured in turns, and judge the student by [budgets.distill]\n"
                    "(default: max_accuracy_drop 2, max_subgroup_drop 4; min_agreement is reported, and judged\n"
                    "only when you set it).\n\n"
                    "Students (--student; default: the largest with at most a quarter of the teacher's\n"
                    "parameters):\n" + "\n".join(f"  {name:<19} {preset.description}"
                                                    for name, preset in _student_presets().items()) +
                    "\n\nExit status: 0 within budget (or no evaluation set), 1 over budget, 2 bad input.",
    )
    p.add_argument("teacher", metavar="TEACHER")
    p.add_argument("--images", type=Path, required=True,
                   help="folder of images to distill on (any depth; class folders named like the labels add them)")
    p.add_argument("--out", type=Path, help="student model folder (default: ARTIFACTS/<teacher>-student)")
    p.add_argument("--student", help="a preset (listed above) or a transformers config.json (default: sized from "
                                     "the teacher)")
    p.add_argument("--input-size", type=int, metavar="N",
                   help="the student's square input side in pixels (default: the teacher's)")
    p.add_argument("--eval", type=Path, help="class folders to compare teacher and student on (default: the "
                                             "teacher's eval from the config)")
    p.add_argument("--max-steps", type=int, help="training steps at most (default 4000)")
    p.add_argument("--minutes", type=float, help="training time at most, in minutes (default 15)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, the initialization and the batches "
                                                       "(default 0)")
    p.add_argument("--cache", type=Path, help="teacher-output cache folder (default: $EDGEPORT_CACHE or "
                                              "~/.cache/edgeport)")
    p.add_argument("--latency-variants", default=None,
                   help="comma-separated variants both models are exported to and timed on, or 'none' "
                        "(default: onnx-fp32,tflite-fp32, those installed)")
    p.add_argument("--revision", help="hub commit of the teacher (required for hub ids)")
    p.add_argument("--allow-pickle", action="store_true", help="accept a teacher with only pickle weights "
                                                               "(trusted files only)")
    p.add_argument("--force", action="store_true", help="train again even if OUT holds the student of these inputs")
    p.add_argument("--config", type=Path, help=f"config file (default: {CONFIG_DEFAULT})")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_distill)

    p = sub.add_parser(
        "backends", help="which optional backends (pip extras) are installed, and how to add the others",
        description="List edgeport's optional backends, one pip extra each: whether it is installed here, the\n"
                    "variants it makes, and the command that installs it. The default variant list of\n"
                    "`export` and `export-all` is what the installed backends can make; a variant named\n"
                    "explicitly whose backend is missing fails with this command, and the others are made.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.set_defaults(func=cmd_backends)

    return parser


def _add_export_options(p: argparse.ArgumentParser) -> None:
    """Options that `export` and `export-all` share."""
    p.add_argument("--force", action="store_true",
                   help="re-export every variant (default: reuse artifacts whose inputs and sha256 are unchanged, "
                        "so a rerun after an interruption finishes only the remaining work)")
    p.add_argument("--allow-pickle", action="store_true",
                   help="accept a model folder with only pickle weights (pytorch_model.bin...), which can run "
                        "code when loaded; only for files you trust (per model: allow_pickle = true in the "
                        "config). Recorded in the manifest and report")


def _input_size(text: str) -> tuple[int, int]:
    """--input-size HxW."""
    from edgeport.config import parse_input_size

    try:
        return parse_input_size(text, "--input-size")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config)


def cmd_export(args: argparse.Namespace) -> int:
    from edgeport import api

    result = api.export(args.model, out=args.out, variants=args.variants.split(",") if args.variants else None,
                        calibration=args.calibration, images=args.images, revision=args.revision,
                        config=_config(args), force=args.force,
                        full_integer_activations=args.full_integer_activations,
                        precision_search=False if args.no_precision_search else None,
                        allow_pickle=args.allow_pickle, progress=not args.no_progress, input_size=args.input_size,
                        decode=args.decode)
    print(f"manifest: {result.out_dir / 'manifest.json'}")
    return EXIT_FAILED if result.failed else EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    from edgeport import api
    from edgeport.pipeline import read_manifest

    cfg = _config(args)
    entry = cfg.model(read_manifest(args.dir)["model"])
    report = api.validate(args.dir, eval=args.eval, config=cfg, latency_runs=args.latency_runs,
                          label_map=dict(_folder_label(x) for x in args.label_map),
                          subgroups=_subgroup_spec(args, entry.subgroups if entry else None),
                          progress=not args.no_progress)
    if report.data.get("too_many_skipped"):
        print(report.data["too_many_skipped"])
    return EXIT_OK if report.passed else EXIT_FAILED


def _subgroup_spec(args: argparse.Namespace, configured: SubgroupSpec | None) -> SubgroupSpec | None:
    """The config's subgroup spec with the command line's parts put in (None: no subgroups)."""
    if args.no_subgroups:
        return None
    given = {}
    if args.subgroup_pattern or args.subgroup_manifest:
        given.update(pattern=args.subgroup_pattern, manifest=args.subgroup_manifest)
    if args.subgroup_values:
        given["values"] = dict(_attribute_values(x) for x in args.subgroup_values)
    if args.subgroup_bins:
        given["bins"] = dict(_attribute_bins(x) for x in args.subgroup_bins)
    if args.subgroup_attributes:
        given["attributes"] = [a.strip() for a in args.subgroup_attributes.split(",") if a.strip()]
    if args.min_subgroup_size is not None:
        given["min_size"] = args.min_subgroup_size
    if not given:
        return configured
    spec = dataclasses.replace(configured or SubgroupSpec(), **given)
    spec.check("command line")
    return spec


def _attribute_values(text: str) -> tuple[str, dict[str, str]]:
    attribute, _, pairs = text.partition("=")
    try:
        mapping = dict(pair.split(":", 1) for pair in pairs.split(","))
    except ValueError:
        mapping = {}
    if not attribute or not mapping:
        raise ValueError(f"--subgroup-values {text!r}: expected ATTR=RAW:NAME,RAW:NAME")
    return attribute.strip(), {k.strip(): v.strip() for k, v in mapping.items()}


def _attribute_bins(text: str) -> tuple[str, list[float]]:
    attribute, _, edges = text.partition("=")
    try:
        return attribute.strip(), [float(e) for e in edges.split(",")]
    except ValueError:
        raise ValueError(f"--subgroup-bins {text!r}: expected ATTR=EDGE,EDGE,... (numbers)") from None


def _passed(report: dict, cfg: Config) -> bool:
    """Budgets met and not too many unreadable evaluation images (which is printed)."""
    from edgeport.validation.gate import too_many_skipped

    skipped = too_many_skipped(report, cfg.gate)
    if skipped:
        print(skipped)
    return report["passed"] and not skipped


def cmd_export_all(args: argparse.Namespace) -> int:
    from edgeport.pipeline import export_model, validate_export
    from edgeport.shards import models_in_shard, parse_shard

    shard = parse_shard(args.shard) if args.shard else None
    cfg = _config(args)
    overrides = dict(_name_dir(s) for s in args.eval)
    models = [m for m in cfg.models if not args.only or m.name in args.only]
    if not models:
        raise ConfigError(f"{cfg.where}: no models to export" + (f" named {args.only}" if args.only else ""))
    unknown = sorted(set(overrides) - {m.name for m in cfg.models})
    if unknown:
        raise ConfigError(f"--eval names unknown model(s) {unknown}")
    if shard:
        k, n = shard
        taken = set(models_in_shard([m.name for m in models], k, n))
        if not taken:  # a runner with nothing to do must not fail CI
            print(f"edgeport: shard {k}/{n} takes none of the {len(models)} model(s); nothing to do")
            return EXIT_OK
        models = [m for m in models if m.name in taken]
        print(f"edgeport: shard {k}/{n} takes {len(models)} model(s): {', '.join(m.name for m in models)}")
    root = args.out_root or cfg.artifacts_dir
    # Check every input before hours of conversion start.
    plans = []
    for m in models:
        eval_dir = overrides.get(m.name, m.eval_dir)
        if eval_dir is None or not (eval_dir.is_dir() or (eval_dir.suffix.lower() == ".csv" and eval_dir.is_file())):
            raise FileNotFoundError(f"model {m.name!r}: evaluation folder (or a multi-label model's label CSV) "
                                    f"not found: {eval_dir}")
        if m.distill is not None:  # its source folder is made by distilling first, below
            if not m.distill.images.is_dir():
                raise FileNotFoundError(f"model {m.name!r}: [models.distill] images folder not found: "
                                        f"{m.distill.images}")
            plans.append((m, None, eval_dir))
            continue
        source = resolve_source(m.source, m.revision, m.base_dir, allow_pickle=args.allow_pickle or m.allow_pickle)
        if source.local:  # class folders that match no label: an error now, not after the export
            from edgeport.model_source import read_labels
            from edgeport.validation.dataset import scan_eval_set

            scan_eval_set(eval_dir, read_labels(Path(source.location) / "config.json"), m.label_map)
        plans.append((m, source, eval_dir))

    failed = []
    for m, source, eval_dir in plans:
        if source is None:
            from edgeport import api

            api.distill_first(m, cfg, progress=not args.no_progress)
            source = resolve_source(m.source, m.revision, m.base_dir)
        result = export_model(m.name, source, root / m.name, variants=m.variants,
                              images_dir=None if m.calibration_dir else eval_dir,
                              calibration_dir=m.calibration_dir, eval_dir=eval_dir, opset=cfg.opset,
                              force=args.force, full_integer_activations=m.full_integer_activations,
                              project_dir=m.base_dir, progress=not args.no_progress,
                              budgets=cfg.budgets_for(m), label_map=m.label_map,
                              precision_search=m.precision_search, input_size=m.input_size, decode=m.decode)
        report = validate_export(root / m.name, eval_dir, cfg.budgets_for(m), cfg.run,
                                 progress=not args.no_progress, label_map=m.label_map, subgroups=m.subgroups)
        if result.failed or not _passed(report, cfg):
            failed.append(m.name)
    if failed:
        print(f"edgeport: {len(failed)} of {len(plans)} model(s) failed: {', '.join(failed)}", file=sys.stderr)
        return EXIT_FAILED
    print(f"edgeport: all {len(plans)} model(s) passed; reports under {root}/")
    return EXIT_OK


def cmd_gate(args: argparse.Namespace) -> int:
    from edgeport import api

    result = api.gate(args.reports or None, baseline=args.baseline, config=_config(args),
                      max_accuracy_regression=args.max_accuracy_regression,
                      max_agreement_regression=args.max_agreement_regression, expect_config=args.expect_config)
    for verdict in result.models:
        for line in verdict.reasons:
            print(line)
        for line in verdict.notes:
            print(f"NOTE {line}")
        if verdict.reasons:
            print(f"gate: {verdict.model} FAILED ({len(verdict.reasons)} reason(s))", file=sys.stderr)
        else:
            print(f"gate: {verdict.model} passed ({verdict.variants} variants"
                  + (", no regression against the baseline)" if verdict.against_baseline else ")"))
    for name in result.missing:
        print(f"FAIL {name}: no report found (was its shard run?)")
    failed = sum(not v.passed for v in result.models)
    print(f"gate: {len(result.models)} report(s), {failed} failed"
          + (f", {len(result.missing)} configured model(s) without a report" if result.missing else ""))
    return EXIT_OK if result.passed else EXIT_FAILED


def cmd_bench(args: argparse.Namespace) -> int:
    from edgeport.bench import BenchOptions, run_bench

    cfg = _config(args)
    model = None
    if (args.validate_model or "").lower() != "none" and cfg.models:
        model = cfg.model(args.validate_model) if args.validate_model else cfg.models[0]
        if model is None:
            raise ConfigError(f"--validate-model {args.validate_model!r} is not a model in {cfg.where}")
    eval_dir = args.validate_eval or (model.eval_dir if model else None)
    if eval_dir is not None and not eval_dir.is_dir():
        raise FileNotFoundError(f"evaluation folder not found: {eval_dir}")
    calibration = args.calibration or next(
        (m.calibration_dir for m in ([model] if model else []) + cfg.models if m.calibration_dir), None)
    if calibration is None:
        raise ConfigError("bench needs real images for calibration: pass --calibration DIR")
    opts = BenchOptions(
        out_dir=args.out or cfg.artifacts_dir / "bench", arch=args.arch,
        variants=args.variants.split(",") if args.variants else default_variants(),
        calibration_dir=calibration, runs=args.runs, baseline=not args.no_baseline,
        search_cost=args.search_cost,
        validate_model=model, validate_eval=eval_dir, threads=cfg.run.threads,
        budgets=cfg.budgets_for(model) if model else {}, run_settings=cfg.run,
        project_dir=cfg.base_dir, progress=not args.no_progress,
    )
    result = run_bench(opts)
    print(f"bench: {opts.out_dir / 'bench.md'} and bench.json ({result['total_seconds'] / 60:.1f} min)")
    return EXIT_OK


def cmd_matrix(args: argparse.Namespace) -> int:
    from edgeport.architectures import ARCHITECTURES
    from edgeport.matrix import MatrixOptions, run_matrix

    cfg = _config(args)
    base = cfg.base_dir
    first = cfg.models[0] if cfg.models else None
    eval_dir = args.eval or (first.eval_dir if first else None)
    calibration = args.calibration or (first.calibration_dir if first else None)
    if eval_dir is None or not eval_dir.is_dir():
        raise FileNotFoundError(f"evaluation folder not found: {eval_dir} (pass --eval DIR)")
    if calibration is None or not calibration.is_dir():
        raise FileNotFoundError(f"calibration folder not found: {calibration} (pass --calibration DIR)")
    train_dir = None
    if not args.random_weights:
        train_dir = args.train_dir if args.train_dir.is_absolute() else base / args.train_dir
        if not train_dir.is_dir():
            raise FileNotFoundError(f"training folder not found: {train_dir}; pass --train-dir DIR (class folders "
                                    "named like the labels female/male), or --random-weights")
    archs = args.arch.split(",") if args.arch else list(ARCHITECTURES)
    unknown = [a for a in archs if a not in ARCHITECTURES]
    if unknown:
        raise ConfigError(f"unknown architecture(s) {unknown}; known: {', '.join(ARCHITECTURES)}")
    doc = base / "docs" / "compatibility.md" if args.doc is None else None if str(args.doc).lower() == "none" \
        else args.doc
    opts = MatrixOptions(out_dir=args.out or cfg.artifacts_dir / "matrix", eval_dir=eval_dir,
                         calibration_dir=calibration, train_dir=train_dir,
                         variants=args.variants.split(",") if args.variants else default_variants(), archs=archs,
                         budgets=cfg.budgets, run_settings=cfg.run, train_steps=args.train_steps, doc=doc,
                         project_dir=base, progress=not args.no_progress)
    result = run_matrix(opts)
    failed = [row["arch"] for row in result["architectures"]
              if row.get("error") or not all(v["passed"] for v in row["variants"])]
    print(f"matrix: {len(archs) - len(failed)} of {len(archs)} architectures pass every variant"
          + (f"; not all: {', '.join(failed)}" if failed else "") + f" ({doc or opts.out_dir / 'compatibility.md'})")
    return EXIT_OK


def cmd_distill(args: argparse.Namespace) -> int:
    from edgeport import api

    latency = None
    if args.latency_variants is not None:
        latency = [] if args.latency_variants.strip().lower() == "none" else \
            [v.strip() for v in args.latency_variants.split(",") if v.strip()]
        unknown = [v for v in latency if v not in VARIANTS]
        if unknown:
            raise ValueError(f"--latency-variants: unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    result = api.distill(args.teacher, images=args.images, out=args.out, student=args.student,
                         input_size=args.input_size, eval=args.eval, config=_config(args), revision=args.revision,
                         allow_pickle=args.allow_pickle, max_steps=args.max_steps, minutes=args.minutes,
                         seed=args.seed, cache=args.cache, latency_variants=latency, force=args.force,
                         progress=not args.no_progress)
    report = result.report
    if not report.get("judged"):
        print("distill: no evaluation set (--eval, or the teacher's eval in the config): the student is not judged")
        return EXIT_OK
    for failure in report["failures"]:
        print(f"distill: over budget: {failure['message']}")
    return EXIT_OK if result.passed else EXIT_FAILED


def _student_presets() -> dict:
    from edgeport.distillation.students import PRESETS

    return PRESETS


def cmd_init(args: argparse.Namespace) -> int:
    from edgeport import api

    try:
        path = api.init(args.model, name=args.name, revision=args.revision, eval=args.eval,
                        calibration=args.calibration, force=args.force)
    except FileExistsError as exc:
        print(f"edgeport init: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"wrote {path}: check the model, eval and calibration entries, then `edgeport export-all`")
    return EXIT_OK


def cmd_backends(args: argparse.Namespace) -> int:
    import json

    from edgeport.backends import RUNTIME_BACKEND, report, runnable

    rows = report()
    for row in rows:  # the variants each backend makes; the core's runtime's (ONNX) are [export]'s
        row["variants"] = [n for n, spec in VARIANTS.items()
                           if RUNTIME_BACKEND.get(spec.runtime, "export") == row["backend"]]
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    print("core (always installed): runs ONNX files; reports, the gate, edgeport.load; every variant is made "
          "with [export]")
    print(f"runs files of: {', '.join(runnable())} (what edgeport serve and edgeport.load can run here)")
    for row in rows:
        state = "installed" if row["installed"] else f"not installed (missing {', '.join(row['missing'])})"
        print(f"{row['backend']}: {state}\n  {row['purpose']}"
              + (f"; variants: {', '.join(row['variants'])}" if row["variants"] else "")
              + ("" if row["installed"] else f"\n  install: {row['install']}"))
    return EXIT_OK


def _require(backend: str, command: str) -> bool:
    """Whether ``backend`` is installed; if not, say so with its install command (on stderr)."""
    from edgeport.backends import BACKENDS, missing_modules

    missing = missing_modules(backend)
    if missing:
        print(f"edgeport {command}: error: needs the {backend} backend (missing {', '.join(missing)}): "
              f"{BACKENDS[backend].install}", file=sys.stderr)
    return not missing


def cmd_serve(args: argparse.Namespace) -> int:
    if not _require("serve", "serve"):
        return EXIT_USAGE
    import uvicorn

    from edgeport.serving.app import CONFIG_ENV, QUEUE_WAIT_S, create_app, default_max_queue, settings_env
    from edgeport.serving.connections import PROTOCOL
    from edgeport.serving.selection import ServeError, select_variant

    threads = args.threads
    if threads is None:
        try:
            threads = _config(args).run.threads
        except (ConfigError, FileNotFoundError):
            threads = 2
    # every serve option that is a setting, by its name (max_queue is derived below when not given)
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(ServeSettings)
             if f.name not in ("model_dir", "threads", "max_queue") and hasattr(args, f.name)}
    settings = ServeSettings(model_dir=str(args.model_dir), threads=threads, **given)
    try:
        for flag in ("max_batch", "max_uploads", "max_connections"):
            if getattr(args, flag) < 1:
                raise ServeError(f"--{flag.replace('_', '-')} must be at least 1, got {getattr(args, flag)}")
        for flag in ("max_wait_ms", "body_timeout_s", "body_grace_s", "min_body_rate_kb", "header_timeout_s",
                     "keep_alive_s"):
            if getattr(args, flag) < 0:
                raise ServeError(f"--{flag.replace('_', '-')} must not be negative, got {getattr(args, flag)}")
        if args.max_queue is not None and args.max_queue < 1:
            raise ServeError(f"--max-queue must be at least 1, got {args.max_queue}")
        model = select_variant(args.model_dir, args.variant)
        if args.max_queue is not None:
            settings.max_queue = args.max_queue
        else:
            settings.max_queue = default_max_queue(model.latency_p50_ms, args.max_batch)
            basis = (f"about {QUEUE_WAIT_S:g} s of work at the validated p50 of {model.latency_p50_ms:.2f} ms"
                     if model.latency_p50_ms else "no validated latency")
            model.notes.append(f"at most {settings.max_queue} requests in progress ({basis}; --max-queue to change)")
        if args.workers > 1:  # each worker process selects again (the same files) and loads its own runner
            settings.variant = model.variant
            os.environ[CONFIG_ENV] = settings_env(settings)
            app: object = "edgeport.serving.app:app_from_env"
        else:
            app = create_app(settings, model)
    except ServeError as exc:
        print(f"edgeport serve: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for note in model.notes:
        print(f"edgeport serve: {note}", flush=True)
    print(f"edgeport serve: {model.name} on http://{args.host}:{args.port}/ ({args.workers} worker(s), "
          f"batches of up to {args.max_batch} within {args.max_wait_ms:g} ms, queue {settings.max_queue})", flush=True)
    # http=PROTOCOL: uvicorn's httptools protocol with a header deadline and a connection bound
    # (serving.connections); timeout_keep_alive: uvicorn's own idle keep-alive limit. No access log:
    # at log level warning it prints nothing, yet uvicorn formats its arguments for every request.
    uvicorn.run(app, host=args.host, port=args.port, workers=args.workers, factory=args.workers > 1,
                log_level="warning", access_log=False, timeout_graceful_shutdown=int(max(args.timeout_s, 1)) + 5,
                http=PROTOCOL, timeout_keep_alive=max(args.keep_alive_s, 0.0))
    return EXIT_OK


def cmd_bench_serve(args: argparse.Namespace) -> int:
    if not _require("serve", "bench-serve"):
        return EXIT_USAGE
    from edgeport.bench_serve import BenchServeOptions, run_bench_serve

    if (args.model_dir is None) == (args.arch is None):
        raise ValueError("bench-serve: give MODEL_DIR (a validated export folder) or --arch, not both or neither")
    try:
        concurrency = sorted({int(c) for c in args.concurrency.split(",") if c.strip()})
    except ValueError:
        raise ValueError(f"--concurrency expects comma-separated client counts, got {args.concurrency!r}") from None
    if not concurrency or concurrency[0] < 1 or args.duration_s <= 0 or args.rounds < 1:
        raise ValueError("--concurrency needs counts >= 1, --duration-s a positive number and --rounds at least 1")
    cfg = _config(args)
    eval_dir = args.eval or (cfg.models[0].eval_dir if args.arch and cfg.models else None)
    calibration_dir = cfg.models[0].calibration_dir if args.arch and cfg.models else None
    name = args.arch or args.model_dir.name
    opts = BenchServeOptions(
        out_dir=args.out or cfg.artifacts_dir / "bench-serve" / name, model_dir=args.model_dir, arch=args.arch,
        variant=args.variant, images_dir=args.images, eval_dir=eval_dir, calibration_dir=calibration_dir,
        concurrency=concurrency,
        duration_s=args.duration_s, threads=args.threads or cfg.run.threads, workers=args.workers,
        max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_queue=args.max_queue,
        baseline=not args.no_baseline, project_dir=cfg.base_dir, rounds=args.rounds,
        config_path=args.config, random_head=args.random_head, pin=not args.no_pin)
    if args.model_dir is not None:
        from edgeport.serving.selection import ServeError, select_variant

        try:  # the server would refuse it too, but only after the benchmark has started
            select_variant(args.model_dir, args.variant)
        except ServeError as exc:
            print(f"edgeport bench-serve: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
    result = run_bench_serve(opts)
    missed = [t["target"] for t in result["targets"] if t["met"] is False]
    print(f"bench-serve: {len(result['targets']) - len(missed)} of {len(result['targets'])} targets met"
          + (f"; missed: {'; '.join(missed)}" if missed else ""))
    return EXIT_OK


def _folder_label(spec: str) -> tuple[str, str]:
    folder, sep, label = spec.partition("=")
    if not sep or not folder or not label:
        raise ConfigError(f"--label-map expects FOLDER=LABEL (or FOLDER=ignore), got {spec!r}")
    return folder, label


def _name_dir(spec: str) -> tuple[str, Path]:
    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
        raise ConfigError(f"--eval expects NAME=DIR, got {spec!r}")
    return name, Path(path)


if __name__ == "__main__":
    sys.exit(main())
