"""Serving latency and throughput of the exported SavedModel: in-process vs gRPC via `ModelServer`.

End to end means JPEG bytes -> outputs (decode, letterbox, CLAHE, model, mapping outputs), measured on
a synthetic spine X-ray JPEG (default 2000 x 800 px, like the AASCE films):
- in-process: `tf.saved_model.load(v).signatures["serving_default"]` called directly, one image per call;
- gRPC: one client, sequential Predict requests of one image to a `ModelServer` in a child process;
- throughput: `--concurrency` (8) client threads, one image per request, server batching off vs on.

    python benchmarks/serving_latency.py                          # default ModelConfig, untrained, 512 x 256
    python benchmarks/serving_latency.py --run runs/aasce_cpu     # a trained run (exported to a temp dir)
    python benchmarks/serving_latency.py --model serving/models/seg4reg   # an exported TF Serving base path
    python benchmarks/serving_latency.py --sizes 1000x400,2000x800,3000x1200 --requests 50
    python benchmarks/serving_latency.py --inference-sizes 256x128,512x256,1024x512

Prints a markdown table with the machine (nproc, CPU model), the date and the exact command.
The weights do not change the cost, so an untrained model gives the same latency as a trained one.
"""
from __future__ import annotations

import argparse
import datetime
import multiprocessing as mp
import os
import platform
import shlex
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

GRPC_OPTIONS = [("grpc.max_send_message_length", 256 << 20), ("grpc.max_receive_message_length", 256 << 20)]


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def parse_sizes(text: str, what: str) -> list[tuple[int, int]]:
    """'2000x800,1000x400' -> [(2000, 800), (1000, 400)] as (height, width); ValueError naming `what`."""
    out = []
    for part in text.split(","):
        part = part.strip().lower()
        try:
            h, w = (int(v) for v in part.split("x"))
        except ValueError:
            raise ValueError(f"{what}: expected HxW[,HxW...] (e.g. 2000x800), got {text!r}") from None
        if h <= 0 or w <= 0:
            raise ValueError(f"{what}: sizes must be positive, got {part!r}")
        out.append((h, w))
    if not out:
        raise ValueError(f"{what}: expected at least one HxW size")
    return out


def machine_info() -> dict[str, str]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        load = "n/a"
    return {"nproc": str(os.cpu_count()), "cpu": cpu, "load": load}


def synthetic_xray_jpeg(height: int, width: int, seed: int = 0, quality: int = 95) -> bytes:
    """A spine-like synthetic X-ray (`data.synth`) resized to height x width px, as 8-bit JPEG bytes."""
    import cv2
    import numpy as np

    from seg4reg_tf.data.synth import synth_example

    image, _ = synth_example(np.random.default_rng(seed), height_range=(1000, 1000))
    image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("cv2.imencode failed for the synthetic JPEG")
    return buf.tobytes()


def percentiles(seconds: list[float]) -> tuple[float, float]:
    """(p50, p99) in milliseconds."""
    import numpy as np

    a = np.asarray(seconds, np.float64) * 1e3
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


def time_calls(fn, n: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def export_untrained(model_cfg, size: tuple[int, int], base: str, clahe: bool = True) -> str:
    """Build `build_model(model_cfg, Preprocessing(size, clahe))` (untrained) and export it to base/1;
    returns the version dir."""
    from seg4reg_tf.export.savedmodel import export_model
    from seg4reg_tf.models import Preprocessing, build_model

    model = build_model(model_cfg, Preprocessing(image_size=tuple(size), clahe=clahe))
    return export_model(model, base, 1)


def prepare_model(args, tmp: str) -> tuple[str, str, str]:
    """(base_path for the server, version dir for in-process, description)."""
    from seg4reg_tf.export.layout import latest_version_dir
    from seg4reg_tf.export.savedmodel import export_run

    if args.model:
        vdir = latest_version_dir(args.model)
        base = str(vdir.parent) if vdir.name.isdigit() else None
        if base is None:  # a bare SavedModel dir: give the server a TF Serving layout
            base = os.path.join(tmp, "base")
            os.makedirs(base)
            os.symlink(os.path.abspath(vdir), os.path.join(base, "1"))
        return base, str(vdir), f"SavedModel {vdir}"
    base = os.path.join(tmp, "base")
    if args.run:
        vdir = export_run(args.run, base, 1)
        return base, vdir, f"run {args.run} (exported to a temp dir)"
    from seg4reg_tf.models import ModelConfig

    size = parse_sizes(args.model_size, "--model-size")[0]
    vdir = export_untrained(ModelConfig(), size, base)
    return base, vdir, f"default ModelConfig() at {size[0]}x{size[1]}, untrained"


# ---------------------------------------------------------------------------------------------
# the server in a child process (so the client threads do not share its GIL)
# ---------------------------------------------------------------------------------------------
def _serve(base: str, batching: bool, max_batch_size: int, timeout_ms: float, conn, stop) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        from seg4reg_tf.serving.server import ModelServer, ServerConfig

        cfg = ServerConfig(model_base_path=base, port=0, rest_port=-1, enable_batching=batching,
                           max_batch_size=max_batch_size, batch_timeout_ms=timeout_ms, poll_seconds=60.0)
        server = ModelServer(cfg).start()
    except Exception as err:  # noqa: BLE001 - report to the parent
        conn.send(("error", f"{type(err).__name__}: {err}"))
        return
    conn.send(("ok", server.port))
    stop.wait()
    server.stop(grace=1.0)


class ServerProcess:
    def __init__(self, base: str, batching: bool, max_batch_size: int, timeout_ms: float) -> None:
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        self._stop = ctx.Event()
        self._proc = ctx.Process(target=_serve, args=(base, batching, max_batch_size, timeout_ms, child, self._stop),
                                 daemon=True)
        self._proc.start()
        if not parent.poll(300):
            self.close()
            raise RuntimeError("ModelServer child did not start within 300 s")
        status, value = parent.recv()
        if status != "ok":
            self.close()
            raise RuntimeError(f"ModelServer child failed: {value}")
        self.port = int(value)

    def close(self) -> None:
        self._stop.set()
        self._proc.join(15)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(5)


def _stub(port: int):
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=GRPC_OPTIONS)
    return channel, prediction_service_pb2_grpc.PredictionServiceStub(channel)


def _request(jpeg: bytes, output_filter: list[str]):
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    req = predict_pb2.PredictRequest()
    req.model_spec.name = "seg4reg"
    req.model_spec.signature_name = "serving_default"
    req.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([jpeg], dtype=tf.string, shape=[1]))
    req.output_filter.extend(output_filter)
    return req


def grpc_predict(stub, req) -> dict:
    """One Predict call, outputs converted to numpy (part of the end-to-end cost)."""
    import tensorflow as tf

    resp = stub.Predict(req, timeout=600)
    return {k: tf.make_ndarray(v) for k, v in resp.outputs.items()}


def throughput(port: int, req, concurrency: int, total: int) -> float:
    """images/s of `total` one-image requests from `concurrency` threads, one channel each."""
    stubs = [_stub(port) for _ in range(concurrency)]
    counts = [total // concurrency + (1 if i < total % concurrency else 0) for i in range(concurrency)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(concurrency + 1)

    def worker(i: int) -> None:
        stub = stubs[i][1]
        try:
            grpc_predict(stub, req)  # warm this channel
            barrier.wait()
            for _ in range(counts[i]):
                grpc_predict(stub, req)
        except BaseException as err:  # noqa: BLE001
            errors.append(err)
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        pass
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    for channel, _ in stubs:
        channel.close()
    if errors:
        raise RuntimeError(f"throughput run failed: {errors[0]}")
    return total / elapsed


# ---------------------------------------------------------------------------------------------
# modes
# ---------------------------------------------------------------------------------------------
def header(args, title: str, model_desc: str, extra: list[str] = ()) -> list[str]:
    import tensorflow as tf

    m = machine_info()
    cmd = " ".join(shlex.quote(a) for a in [os.path.relpath(sys.executable) if sys.executable.startswith(os.getcwd())
                                            else sys.executable] + sys.argv)
    return [f"## {title}", "",
            f"- machine: {m['nproc']} CPUs, {m['cpu']} (load average at start: {m['load']})",
            f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
            f"- TensorFlow {tf.__version__}, Python {platform.python_version()}",
            f"- model: {model_desc}",
            *[f"- {e}" for e in extra],
            f"- command: `{cmd}`", ""]


def run_serving(args) -> int:
    import numpy as np
    import tensorflow as tf
    from tqdm import tqdm

    sizes = parse_sizes(args.sizes, "--sizes")
    output_filter = [s for s in (args.output_filter or "").split(",") if s]
    with tempfile.TemporaryDirectory(prefix="seg4reg_serving_bench_") as tmp:
        print("preparing the SavedModel ...", file=sys.stderr)
        base, vdir, desc = prepare_model(args, tmp)
        fn = tf.saved_model.load(vdir).signatures["serving_default"]
        jpegs = {s: synthetic_xray_jpeg(*s, seed=args.seed) for s in sizes}
        total_tp = max(args.requests, 2 * args.concurrency)

        results = {}
        for s in sizes:
            data = tf.constant([jpegs[s]])

            def local():
                out = fn(image_bytes=data)
                return {k: v.numpy() for k, v in out.items()}

            results[s] = {"local": percentiles(time_calls(local, args.requests))}
            print(f"in-process {s}: p50 {results[s]['local'][0]:.1f} ms", file=sys.stderr)

        servers = {}
        try:
            for batching in (False, True):
                print(f"starting ModelServer (batching {'on' if batching else 'off'}) ...", file=sys.stderr)
                servers[batching] = ServerProcess(base, batching, args.max_batch_size, args.batch_timeout_ms)
            channel, stub = _stub(servers[False].port)
            for s in tqdm(sizes, desc="gRPC", unit="size", file=sys.stderr):
                req = _request(jpegs[s], output_filter)
                local_angles = fn(image_bytes=tf.constant([jpegs[s]]))["cobb_angles"].numpy()
                remote = grpc_predict(stub, req)
                if "cobb_angles" in remote and not np.allclose(remote["cobb_angles"], local_angles, atol=1e-3):
                    raise RuntimeError(f"gRPC and in-process cobb_angles differ: {remote['cobb_angles']} vs "
                                       f"{local_angles}")
                results[s]["grpc"] = percentiles(time_calls(lambda: grpc_predict(stub, req), args.requests))
                for batching in (False, True):
                    results[s][batching] = throughput(servers[batching].port, req, args.concurrency, total_tp)
            channel.close()
        finally:
            for server in servers.values():
                server.close()

    lines = header(args, "Serving latency (JPEG bytes -> outputs)", desc, [
        f"requests: {args.requests} sequential per latency figure (after 2 warm-up calls), {total_tp} "
        f"one-image requests from {args.concurrency} concurrent gRPC clients per throughput figure",
        f"server batching: max_batch_size {args.max_batch_size}, batch_timeout_ms {args.batch_timeout_ms:g}; "
        f"outputs: {', '.join(output_filter) if output_filter else 'all'}",
    ])
    lines += ["| input (H x W, JPEG) | in-process p50 / p99 (ms) | gRPC p50 / p99 (ms) | "
              f"{args.concurrency} clients, batching off (img/s) | {args.concurrency} clients, batching on (img/s) |",
              "|---|---|---|---|---|"]
    for s in sizes:
        r = results[s]
        lines.append(f"| {s[0]} x {s[1]} ({len(jpegs[s]) / 1024:.0f} KiB) | "
                     f"{r['local'][0]:.1f} / {r['local'][1]:.1f} | "
                     f"{r['grpc'][0]:.1f} / {r['grpc'][1]:.1f} | {r[False]:.2f} | {r[True]:.2f} |")
    print("\n".join(lines))
    return 0


def run_inference_sizes(args) -> int:
    import tensorflow as tf
    from tqdm import tqdm

    from seg4reg_tf.models import ModelConfig

    model_sizes = parse_sizes(args.inference_sizes, "--inference-sizes")
    image = parse_sizes(args.sizes, "--sizes")[0]
    model_cfg, desc = ModelConfig(), "default ModelConfig(), untrained"
    if args.run:
        from seg4reg_tf.training.config import load_config

        model_cfg = load_config(os.path.join(args.run, "config.yaml")).model
        desc = f"model config of {args.run}, untrained (weights do not change the cost)"
    jpeg = synthetic_xray_jpeg(*image, seed=args.seed)
    rows = []
    with tempfile.TemporaryDirectory(prefix="seg4reg_inference_bench_") as tmp:
        for size in tqdm(model_sizes, desc="model sizes", unit="size", file=sys.stderr):
            vdir = export_untrained(model_cfg, size, os.path.join(tmp, f"{size[0]}x{size[1]}"))
            loaded = tf.saved_model.load(vdir)
            serve = loaded.signatures["serving_default"]
            predict_image = loaded.signatures["predict_image"]
            data = tf.constant([jpeg])
            pre = tf.zeros([1, size[0], size[1], 1], tf.float32) + 0.5
            e2e = percentiles(time_calls(lambda: {k: v.numpy() for k, v in serve(image_bytes=data).items()},
                                         args.requests))
            model_only = percentiles(time_calls(lambda: {k: v.numpy() for k, v in predict_image(image=pre).items()},
                                                args.requests))
            rows.append((size, e2e, model_only))
    lines = header(args, "SavedModel latency per model input size (in-process, batch 1)", desc, [
        f"input: synthetic X-ray JPEG {image[0]} x {image[1]} ({len(jpeg) / 1024:.0f} KiB); "
        f"{args.requests} calls per figure after 2 warm-up calls",
    ])
    lines += ["| model input (H x W) | serving_default p50 (ms), JPEG -> outputs "
              "| predict_image p50 (ms), model only |",
              "|---|---|---|"]
    for size, e2e, model_only in rows:
        lines.append(f"| {size[0]} x {size[1]} | {e2e[0]:.1f} | {model_only[0]:.1f} |")
    print("\n".join(lines))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--run", help="a `seg4reg train` run directory (exported to a temp dir first)")
    src.add_argument("--model", help="an exported TF Serving base path (newest version) or a SavedModel dir")
    p.add_argument("--model-size", default="512x256", help="HxW of the default untrained model (default 512x256)")
    p.add_argument("--sizes", default="2000x800", help="synthetic X-ray JPEG sizes HxW[,HxW...] (default 2000x800)")
    p.add_argument("--requests", type=int, default=100, help="timed requests per latency/throughput figure")
    p.add_argument("--concurrency", type=int, default=8, help="concurrent gRPC clients for throughput")
    p.add_argument("--max-batch-size", type=int, default=8, help="server batching max_batch_size")
    p.add_argument("--batch-timeout-ms", type=float, default=5.0, help="server batching batch_timeout_ms")
    p.add_argument("--output-filter", default="", help="comma-separated outputs to request over gRPC (default all)")
    p.add_argument("--inference-sizes", default=None,
                   help="instead: SavedModel p50 per model input size HxW[,HxW...], e.g. 256x128,512x256,1024x512")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic X-ray")
    args = p.parse_args(argv)
    if args.requests < 1 or args.concurrency < 1:
        p.error("--requests and --concurrency must be positive")
    try:
        parse_sizes(args.sizes, "--sizes")
        if args.inference_sizes:
            if args.model:
                p.error("--inference-sizes builds models per size; use --run (its model config) or nothing")
            parse_sizes(args.inference_sizes, "--inference-sizes")
    except ValueError as err:
        p.error(str(err))
    if args.inference_sizes:
        return run_inference_sizes(args)
    return run_serving(args)


if __name__ == "__main__":
    sys.exit(main())
