#!/usr/bin/env python3
"""Writes the seed corpora of tests/fuzz/<target>/ (a few valid and edge-case inputs each).

The seeds are committed; this script says how they were made and remakes them:

    python3 tests/fuzz/make_seeds.py            # from the repository root

The image and ONNX seeds need PIL and PyTorch (Debian: python3-pil, python3-torch, python3-onnx):
run it with the system's /usr/bin/python3.

Inputs follow each target's layout (see the comment atop tests/fuzz/<target>_fuzz.cc): fields are
bytes, u32 little-endian, and u32-length-prefixed strings (tests/fuzz/fuzz_input.h). Messages of
ps.proto and store.proto are encoded with Python's protobuf, from code protoc generates here into
a temporary directory. Files named crash-* or regression-* are inputs of fixed findings and are
left alone.
"""
import gzip
import json
import os
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FUZZ = os.path.join(ROOT, "tests", "fuzz")


def u32(n):
    return struct.pack("<I", n)


def field(b):
    return u32(len(b)) + b


def write(target, name, data):
    d = os.path.join(FUZZ, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


# ---- CRC-32C (Castagnoli), as core/io/crc32c.h
def _crc_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


# ---- safetensors
def safetensors(tensors, metadata=None, header_override=None):
    """tensors: list of (name, dtype, shape, bytes)."""
    header = {}
    if metadata:
        header["__metadata__"] = metadata
    offset = 0
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    h = header_override if header_override is not None else json.dumps(header, separators=(",", ":"))
    h = h.encode() if isinstance(h, str) else h
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(t[3] for t in tensors)


def f32(*values):
    return struct.pack("<%df" % len(values), *values)


def checkpoint_file(tensors):
    metadata = {"format": "tandem-checkpoint-1"}
    for name, _, _, data in tensors:
        metadata["crc32c." + name] = "%08x" % crc32c(data)
    return safetensors(tensors, metadata)


def trainer_state(step, model, optimizer, checksum=True, **changes):
    state = {
        "format": "tandem-checkpoint-1", "step": step, "epoch": 1, "step_in_epoch": 3,
        "rng": {"data": [1, 2, 3]}, "config_digest": "0123456789abcdef", "world_size": 1,
        "elapsed_s": 1.5, "saved_at": 1700000000.25,
        "files": {
            "model.safetensors": {"bytes": len(model), "crc32c": "%08x" % crc32c(model)},
            "optimizer.safetensors": {"bytes": len(optimizer), "crc32c": "%08x" % crc32c(optimizer)},
        },
        "extra": {"best": 0.5},
    }
    state.update(changes)
    if not checksum:
        return json.dumps(state, indent=2) + "\n"
    state["state_crc32c"] = "00000000"
    text = json.dumps(state, indent=2) + "\n"
    at = text.rindex('"00000000"')
    return text[:at + 1] + "%08x" % crc32c(text.encode()) + text[at + 9:]


def safetensors_seeds():
    write("safetensors", "valid-two-tensors", safetensors(
        [("w", "F32", [2, 3], f32(1, 2, 3, 4, 5, 6)), ("n", "I64", [], struct.pack("<q", 7))],
        {"format": "pt"}))
    write("safetensors", "empty-header", safetensors([]))
    write("safetensors", "zero-size-and-bf16", safetensors(
        [("e", "F32", [0, 4], b""), ("h", "BF16", [2], b"\x80\x3f\x00\x40")]))
    write("safetensors", "truncated", safetensors([("w", "F32", [4], f32(1, 2, 3, 4))])[:-5])
    write("safetensors", "nested-shape", safetensors(
        [], header_override='{"w":{"dtype":"F32","shape":' + "[" * 100 + "]" * 100 +
        ',"data_offsets":[0,0]}}'))
    write("safetensors", "overflowing-shape", safetensors(
        [], header_override='{"w":{"dtype":"F64","shape":[4294967296,4294967296],'
                            '"data_offsets":[0,0]}}'))
    write("safetensors", "gap-in-offsets", safetensors(
        [], header_override='{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},'
                            '"b":{"dtype":"U8","shape":[2],"data_offsets":[3,5]}}') + b"xxxxx")


def checkpoint_seeds():
    model = checkpoint_file([("fc.weight", "F32", [2, 2], f32(1, 2, 3, 4)),
                             ("fc.bias", "F32", [2], f32(0.5, -0.5))])
    optimizer = checkpoint_file([("step", "I64", [], struct.pack("<q", 7)),
                                 ("fc.weight.momentum_buffer", "F32", [2, 2], f32(0, 0, 0, 0))])

    def pack(m, o, state):
        return field(m) + field(o) + state.encode()

    write("checkpoint", "valid", pack(model, optimizer, trainer_state(7, model, optimizer)))
    write("checkpoint", "valid-without-state-crc",
          pack(model, optimizer, trainer_state(7, model, optimizer, checksum=False)))
    edited = trainer_state(7, model, optimizer).replace('"epoch": 1', '"epoch": 2')
    write("checkpoint", "edited-state", pack(model, optimizer, edited))
    write("checkpoint", "wrong-step", pack(model, optimizer, trainer_state(8, model, optimizer)))
    flipped = bytearray(model)
    flipped[-1] ^= 1
    write("checkpoint", "flipped-model-byte",
          pack(bytes(flipped), optimizer, trainer_state(7, model, optimizer)))
    write("checkpoint", "nested-state",
          pack(model, optimizer, '{"format": "tandem-checkpoint-1", "step": ' + "[" * 80 + "]" * 80 + "}"))
    write("checkpoint", "empty", b"")


def config_seeds():
    for name in sorted(os.listdir(os.path.join(ROOT, "configs"))):
        if name.endswith(".yaml"):
            with open(os.path.join(ROOT, "configs", name), "rb") as f:
                write("config", "shipped-" + name[:-5], f.read())
    minimal = "model: {name: mlp}\ndata: {name: synthetic}\n"
    write("config", "minimal-with-overrides", minimal + "\0optimizer.lr=0.5\0model.hidden=[8,4]"
          "\0strategy.name=ddp\0cluster.slurm.time=1-00:00:00")
    write("config", "every-section", minimal + (
        "optimizer: {name: adam, lr: 0.001, betas: [0.9, 0.99]}\n"
        "schedule: {name: cosine, warmup_steps: 10}\n"
        "training: {epochs: 2, precision: fp64, device: cpu}\n"
        "strategy: {name: parameter_server, num_ps: 2, mode: async, max_staleness: 3}\n"
        "checkpoint: {every_steps: 0, keep: 2}\n"
        "logging: {dir: \"runs/a b\", progress: plain}\n"
        "cluster: {slurm: {nodes: 2, partition: gpu}, kubernetes: {flavor: mpijob}}\n"))
    write("config", "quoted-strings", minimal + "logging: {dir: \"x\\ny\\t\\\"z\"}\n"
          "\0cluster.kubernetes.image='reg/img:1'")
    write("config", "bad-values", minimal + "strategy: {timeout_s: 1e300, bucket_mb: -1}\n"
          "\0strategy.shard_optimizer=true\0training.device=cuda")
    write("config", "deep-flow", minimal + "extra: " + "[" * 70 + "]" * 70 + "\n")


def be32(n):
    return struct.pack(">I", n)


def idx_seeds():
    labels = be32(0x801) + be32(3) + bytes([7, 0, 9])
    images = be32(0x803) + be32(2) + be32(2) + be32(2) + bytes(range(8))
    write("idx", "labels-raw", b"\0" + labels)
    write("idx", "labels-gzip", b"\0" + gzip.compress(labels, mtime=0))
    write("idx", "images-raw", b"\1" + images)
    write("idx", "images-gzip-two-members",
          b"\1" + gzip.compress(images[:9], mtime=0) + gzip.compress(images[9:], mtime=0))
    write("idx", "images-truncated", b"\1" + images[:-3])
    write("idx", "wrong-magic", b"\0" + be32(0x803) + be32(1) + b"x")
    write("idx", "small-bomb", b"\0" + gzip.compress(be32(0x801) + be32(1) + bytes(1 << 20), mtime=0))


def cifar10_seeds():
    records = b"".join(bytes([label]) + bytes((i * 7 + r * 31) % 256 for i in range(3072))
                       for r, label in enumerate([3, 7]))
    write("cifar10", "two-records", records)
    write("cifar10", "two-records-gzip", gzip.compress(records, mtime=0))
    write("cifar10", "bad-label", bytes([10]) + records[1:])
    write("cifar10", "truncated", records[:-1])


def gzip_seeds():
    data = b"tandem " * 100
    write("gzip", "one-member", b"\x07" + u32(1 << 20) + gzip.compress(data, mtime=0))
    write("gzip", "two-members-padded",
          b"\x00" + u32(1 << 20) + gzip.compress(data, mtime=0) + gzip.compress(b"x", mtime=0) + b"\0\0")
    write("gzip", "over-the-cap", b"\xff" + u32(100) + gzip.compress(bytes(4096), mtime=0))
    write("gzip", "truncated", b"\x03" + u32(1 << 20) + gzip.compress(data, mtime=0)[:-6])
    write("gzip", "reserved-block-type", b"\x01" + u32(1 << 20) +
          b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\x07\x00\x00\x00")


def protos(tmp):
    """ps_pb2 and store_pb2, generated into tmp."""
    for proto in ("strategies/parameter_server/ps.proto", "collectives/store/store.proto"):
        subprocess.run(["protoc", "--python_out=" + tmp, "-I", ROOT, os.path.join(ROOT, proto)],
                       check=True)
    sys.path.insert(0, tmp)
    from strategies.parameter_server import ps_pb2  # noqa: E402
    from collectives.store import store_pb2  # noqa: E402
    return ps_pb2, store_pb2


def tensor(ps, name, values, offset=0, whole=None, dtype="f32"):
    t = ps.Tensor()
    t.name = name
    t.dtype = dtype
    whole = whole if whole is not None else len(values)
    t.shape.append(whole)
    t.byte_length = whole * 4
    t.offset = offset
    t.data = f32(*values)
    return t


def ps_wire_seeds(ps):
    msgs = [tensor(ps, "w", [1, 2, 3, 4, 5, 6])]
    write("ps_wire", "one-whole-tensor", u32(1 << 20) + u32(1 << 20) +
          b"".join(field(m.SerializeToString()) for m in msgs))
    pieces = [tensor(ps, "w", [1, 2], 0, 5), tensor(ps, "w", [3, 4, 5], 8, 5),
              tensor(ps, "b", [], 0, 0)]
    write("ps_wire", "pieces-then-empty", u32(16) + u32(9) +
          b"".join(field(m.SerializeToString()) for m in pieces))
    bad = [tensor(ps, "w", [1, 2], 4, 5)]
    write("ps_wire", "first-piece-not-at-zero", u32(64) + u32(64) +
          b"".join(field(m.SerializeToString()) for m in bad))


def ps_shard_seeds(ps):
    def call(op, *messages):
        body = bytes([op])
        if op in (1, 3):  # Restore and Push send a stream: a count, then the messages
            body += bytes([len(messages)])
        return body + b"".join(field(m.SerializeToString()) for m in messages)

    def register(worker, world, mode):
        r = ps.RegisterRequest()
        r.worker, r.world_size, r.mode, r.num_shards = worker, world, mode, 1
        return r

    def restore(world, *tensors, optimizer=()):
        r = ps.RestoreRequest()
        r.world_size = world
        r.params.extend(tensors)
        r.optimizer.extend(optimizer)
        return r

    def push(worker, step, *grads):
        r = ps.PushRequest()
        r.worker, r.step, r.lr = worker, step, 0.5
        r.grads.extend(grads)
        return r

    def pull(worker, step):
        r = ps.PullRequest()
        r.worker, r.step = worker, step
        return r

    def barrier(worker, key, *values):
        r = ps.BarrierRequest()
        r.worker, r.key = worker, key
        r.values.extend(values)
        return r

    def done(worker):
        r = ps.DoneRequest()
        r.worker = worker
        return r

    w = tensor(ps, "w", [1, 2, 3, 4, 5, 6, 7, 8])
    g = tensor(ps, "w", [1, 1, 1, 1, 1, 1, 1, 1])
    sync = (call(0, register(0, 1, "sync")) + call(1, restore(1, w)) + call(2, pull(0, 0)) +
            call(3, push(0, 0, g)) + call(2, pull(0, 1)) + call(5) + call(4, barrier(0, "k", 1.0)) +
            call(7, done(0)))
    write("ps_shard", "sync-one-worker", b"\x00" + sync)
    write("ps_shard", "sync-adam-streamed", b"\x40" + sync)  # 64-byte messages: many pieces
    two = (call(0, register(0, 2, "sync")) + call(0, register(1, 2, "sync")) +
           call(1, restore(2, w)) + call(3, push(0, 0, g)) + call(3, push(1, 0, g)) +
           call(3, push(1, 0, g)) + call(2, pull(1, 1)))
    write("ps_shard", "sync-two-workers-duplicate", b"\x18" + two)
    asyn = (call(0, register(0, 2, "async")) + call(0, register(1, 2, "async")) +
            call(1, restore(2, w)) + call(3, push(0, 0, g)) + call(3, push(0, 1, g)) +
            call(2, pull(0, 2)) + call(6, ps.AbortRequest(worker=1, reason="x")) +
            call(3, push(1, 0, g)))
    write("ps_shard", "async-staleness-abort", b"\x03" + asyn)
    pieces = (call(0, register(0, 1, "sync")) +
              call(1, restore(1, tensor(ps, "w", [1, 2], 0, 4)),
                   restore(1, tensor(ps, "w", [3, 4], 8, 4))) +
              call(3, push(0, 0, tensor(ps, "w", [1], 0, 4)), push(0, 0, tensor(ps, "w", [1, 1, 1], 4, 4))) +
              call(5))
    write("ps_shard", "restore-and-push-in-pieces", b"\x00" + pieces)


def store_seeds(st):
    def call(op, how, message):
        return bytes([op | (how << 3)]) + field(message.SerializeToString())

    s = (call(0, 0, st.SetRequest(key="rank/0", value=b"127.0.0.1:1234")) +
         call(1, 0, st.GetRequest(key="rank/0")) +
         call(2, 0, st.WaitRequest(keys=["rank/0", "rank/1"], timeout_ms=1, return_values=True)) +
         call(3, 0, st.AddRequest(key="count", delta=5)) +
         call(4, 0, st.CompareSetRequest(key="cas", expected=b"", desired=b"v")) +
         call(5, 0, st.DeleteRequest(keys=["count"])) +
         call(6, 0, st.HeartbeatRequest(rank=3, timestamp_ms=1700000000000)) +
         call(7, 0, st.ListHeartbeatsRequest()))
    write("store", "every-call", s)
    write("store", "tokens-missing-and-wrong",
          call(0, 1, st.SetRequest(key="a", value=b"b")) + call(1, 2, st.GetRequest(key="a")))
    write("store", "bad-keys-and-overflow",
          call(0, 0, st.SetRequest(key="", value=b"x")) +
          call(1, 0, st.GetRequest(key="k" * 5000)) +
          call(0, 0, st.SetRequest(key="n", value=b"9223372036854775807")) +
          call(3, 0, st.AddRequest(key="n", delta=1)) +
          call(3, 0, st.AddRequest(key="rank/0", delta=1)) +
          call(6, 0, st.HeartbeatRequest(rank=-1)))


def cluster_seeds():
    def seed(flags, source, logdir, workdir, tandem, partition=b"", account=b"", time=None,
             image=b"tandem:latest", namespace=None, sizes=b"\x01\x01\x00\x01\x01\x01"):
        out = bytes([flags]) + field(source) + field(logdir) + field(workdir) + field(tandem)
        out += field(partition) + field(account)
        if flags & 0x01:
            out += field(time)
        out += sizes[:3]
        if flags & 0x04:
            out += sizes[3:4]
        out += field(image)
        if flags & 0x08:
            out += field(namespace)
        out += sizes[4:5]
        if flags & 0x20:
            out += sizes[5:6]
        return out

    write("cluster_render", "plain", seed(0, b"exp/run.yaml", b"runs/run", b"/home/u", b"/opt/tandem"))
    write("cluster_render", "newline-in-logging-dir",
          seed(0, b"exp/run.yaml", b"runs/x\ntouch PWNED\n", b"/home/u", b"/opt/tandem"))
    write("cluster_render", "newline-in-source-path",
          seed(0x10, b"exp/x\n---\nkind: Pod\n#.yaml", b"runs/run", b"/w", b"/t"))
    write("cluster_render", "quotes-percent-backslash",
          seed(0x03, b"exp/it's #1.yaml", b"runs/50% \"done\"", b"/home/u/a\\b $HOME",
               b"/opt/t'a n", b"gpu,debug", b"proj", b"2-00:00:00"))
    write("cluster_render", "ps-gpus-mpijob-namespace",
          seed(0x3c, b"exp/run.yaml", b"runs/run", b"/w", b"/t", image=b"reg/img:1 #x",
               namespace=b"team-a", sizes=b"\x02\x02\x01\x02\x02\x01"))
    write("cluster_render", "escape-in-image",
          seed(0, b"exp/run.yaml", b"runs/run", b"/w", b"/t", image=b"reg/t:1\x1b[2J"))


def image_seeds():
    import io
    from PIL import Image

    def encode(image, fmt, **options):
        out = io.BytesIO()
        image.save(out, fmt, **options)
        return out.getvalue()

    rgb = Image.new("RGB", (5, 3))
    rgb.putdata([(i * 40 % 256, i * 70 % 256, i * 20 % 256) for i in range(15)])
    write("image", "rgb.png", encode(rgb, "PNG"))
    write("image", "gray.png", encode(rgb.convert("L"), "PNG"))
    write("image", "palette.png", encode(rgb.convert("P"), "PNG"))
    write("image", "rgba.png", encode(rgb.convert("RGBA"), "PNG"))
    gray16 = Image.new("I;16", (4, 2))
    gray16.putdata([0, 1, 255, 256, 4095, 30000, 65534, 65535])
    write("image", "gray16.png", encode(gray16, "PNG"))
    write("image", "rgb.jpg", encode(rgb, "JPEG", quality=90))
    write("image", "gray.jpg", encode(rgb.convert("L"), "JPEG"))
    write("image", "progressive.jpg", encode(rgb.resize((17, 9)), "JPEG", progressive=True))
    write("image", "truncated.png", encode(rgb, "PNG")[:-20])
    write("image", "truncated.jpg", encode(rgb, "JPEG")[:-10])


def onnx_seeds():
    # The ONNX import tests' own models (tests/reference/onnx_models.py), small, behind three
    # bytes: channels - 1, height - 1, width - 1 of the samples (tests/fuzz/onnx_fuzz.cc).
    script = os.path.join(ROOT, "tests", "reference", "onnx_models.py")
    cases = [("tiny-cnn", ["export", "tiny_cnn", "--size", "8", "--classes", "3",
                           "--in-channels", "1"], (1, 8, 8)),
             ("skip-cnn", ["export", "skip_cnn", "--size", "8", "--classes", "4",
                           "--in-channels", "3"], (3, 8, 8)),
             ("misc-ops", ["graph", "misc_ops"], (3, 8, 8)),
             ("nhwc-dense", ["graph", "nhwc_dense"], (3, 9, 10)),
             ("unsupported-op", ["graph", "unsupported_op"], (3, 8, 8))]
    with tempfile.TemporaryDirectory() as tmp:
        for name, args, (c, h, w) in cases:
            out = os.path.join(tmp, name + ".onnx")
            args = args[:2] + [out] + args[2:]
            subprocess.run([sys.executable, script] + args, check=True)
            with open(out, "rb") as f:
                write("onnx", name, bytes([c - 1, h - 1, w - 1]) + f.read())


def main():
    safetensors_seeds()
    checkpoint_seeds()
    config_seeds()
    idx_seeds()
    cifar10_seeds()
    gzip_seeds()
    cluster_seeds()
    image_seeds()
    onnx_seeds()
    with tempfile.TemporaryDirectory() as tmp:
        ps, st = protos(tmp)
        ps_wire_seeds(ps)
        ps_shard_seeds(ps)
        store_seeds(st)


if __name__ == "__main__":
    main()
