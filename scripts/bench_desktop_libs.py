#!/usr/bin/env python3
"""The desktop agent's hand-written X and PNG code against Debian's libraries.

    python scripts/bench_desktop_libs.py              # image: $SANDBOX_IMAGE_NAMESPACE/desktop
    python scripts/bench_desktop_libs.py --rounds 2000 --image sandbox/desktop:latest
    python scripts/bench_desktop_libs.py --against old/desktop:latest   # agent A/B, see below

Starts one container of the desktop image (no network, no ``sandbox.*`` labels:
the sandbox server neither adopts nor reaps it), mounts this checkout's
``sandbox/agent`` and this script into it, and runs the measurements there
(``--inside``) on an Xvfb the script starts, with openbox, an xterm full of text
and xcalc on screen. The container is removed afterwards, whatever happens.

Each row times one job both ways, alternating call by call so drift on the shared
machine hits both alike:

- XTEST input: the agent's ctypes calls on libXtst against python3-xlib's
  ``Xlib.ext.xtest.fake_input``, each ending in a round trip (``sync``) as the
  tools do.
- Window properties and queries: ctypes libX11 against python3-xlib.
- The screen grab: MIT-SHM and ``XGetImage`` through ctypes, and python3-xlib's
  ``get_image`` (it has no MIT-SHM).
- PNG encoding of that 1280x800 screen: the agent's zlib encoder (level 1)
  against python3-pil (``compress_level=1``), with the bytes each produces; PIL's
  JPEG for reference (the agent has no JPEG encoder).
- Import time of each library in a fresh python3, which a new session pays.

With ``--against IMAGE`` it instead starts one desktop of each image as its
agent (token auth, TCP published on 127.0.0.1 only), puts an xterm full of text
on both, and times ``vm.screenshot``, ``vm.click`` and ``vm.type`` at the agent,
alternating call by call between the two: an A/B of two agent versions that the
machine's noise hits alike.
"""

from __future__ import annotations

import argparse
import io
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
INSIDE_ROOT = "/bench"
AGENT_COPY = "/root/bench-agent"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    namespace = os.environ.get("SANDBOX_IMAGE_NAMESPACE", "sandbox")
    parser.add_argument("--image", default=f"{namespace}/desktop:latest")
    parser.add_argument("--rounds", type=int, default=1000, help="timed calls per input row")
    parser.add_argument("--name", default=f"bench-desktop-libs-{secrets.token_hex(3)}")
    parser.add_argument("--against", metavar="IMAGE", help="A/B the agents of IMAGE and --image")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        return inside(args.rounds)
    if args.against:
        return agents_ab({"before": args.against, "after": args.image}, args.name, args.rounds)
    return outside(args)


def agents_ab(images: dict[str, str], name: str, rounds: int) -> int:
    """Time the same tool calls on two agents, alternating; print a table."""
    import http.client
    import json

    import docker

    client = docker.from_env()
    token = secrets.token_hex(16)
    containers = {}
    connections: dict[str, http.client.HTTPConnection] = {}

    def call(label: str, tool: str, **params: object) -> dict[str, Any]:
        connection = connections[label]
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        connection.request("POST", f"/call/{tool}", json.dumps(params), headers)
        reply = json.loads(connection.getresponse().read())
        if not reply["ok"]:
            raise SystemExit(f"{label}: {tool}: {reply['error']}")
        return dict(reply["data"])

    try:
        for label, image in images.items():
            containers[label] = client.containers.run(
                image,
                name=f"{name}-{label}",
                detach=True,
                environment={
                    "SANDBOX_AGENT_TOKEN": token,
                    "SANDBOX_AGENT_HOST": "0.0.0.0",
                    "SANDBOX_AGENT_PORT": "8000",
                },
                ports={"8000/tcp": ("127.0.0.1", None)},
                mem_limit="1g",
            )
        for label, container in containers.items():
            connections[label] = _wait_for_agent(container)
        for label in containers:
            call(label, "vm.launch", command="xterm", wait_for_window=True)
            time.sleep(0.5)
            call(label, "vm.type", text="ls -l /usr/bin | head -40\n")
        time.sleep(1.0)
        print(f"{rounds} rounds; before: {images['before']}, after: {images['after']}")
        print()
        print("| call at the agent | agent | n | p50 ms | p95 ms |")
        print("|---|---|---|---|---|")
        for job, params, count in [
            ("vm.screenshot", {}, rounds),
            ("vm.click", {"x": 1250, "y": 780}, 2 * rounds),
            ("vm.type", {"text": "abcdefghij"}, rounds // 2),
        ]:
            functions = tuple(
                (lambda label=label, job=job, params=params: call(label, job, **params))
                for label in containers
            )
            for label, samples in zip(containers, _alternate(functions, count), strict=True):
                p50, p95 = _percentiles(samples)
                print(f"| {job} | {label} | {len(samples)} | {p50:.2f} | {p95:.2f} |")
    finally:
        for container in containers.values():
            container.remove(force=True)
    return 0


def _wait_for_agent(container: Any) -> Any:
    """A kept-alive connection to `container`'s agent once ``/health`` answers."""
    import http.client

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        container.reload()
        published = container.attrs["NetworkSettings"]["Ports"].get("8000/tcp")
        if published:
            connection = http.client.HTTPConnection(
                "127.0.0.1", int(published[0]["HostPort"]), timeout=60
            )
            try:
                connection.request("GET", "/health")
                response = connection.getresponse()
                response.read()
                if response.status == 200:
                    return connection
            except OSError:
                connection.close()
        time.sleep(0.1)
    raise SystemExit(f"{container.name}: no agent answered; its log:\n{container.logs().decode()}")


def outside(args: argparse.Namespace) -> int:
    """Run this script inside a container of the desktop image; print its table."""
    import docker  # the host's; the container has no Docker SDK

    client = docker.from_env()
    container = client.containers.run(
        args.image,
        ["python3", f"{INSIDE_ROOT}/bench.py", "--inside", "--rounds", str(args.rounds)],
        name=args.name,
        detach=True,
        network_mode="none",
        user="root",
        working_dir="/",
        volumes={
            str(ROOT / "sandbox" / "agent"): {"bind": f"{INSIDE_ROOT}/sandbox_agent", "mode": "ro"},
            str(Path(__file__).resolve()): {"bind": f"{INSIDE_ROOT}/bench.py", "mode": "ro"},
        },
    )
    try:
        status = container.wait(timeout=1800)
        sys.stdout.write(container.logs(stdout=True, stderr=False).decode())
        sys.stderr.write(container.logs(stdout=False, stderr=True).decode())
        return int(status.get("StatusCode", 1))
    finally:
        container.remove(force=True)


# -- inside the container --------------------------------------------------------


def inside(rounds: int) -> int:
    # A compiled copy, as in the image (whose own agent may be older than this
    # checkout's): imports then cost what they cost in a session.
    shutil.copytree(f"{INSIDE_ROOT}/sandbox_agent", f"{AGENT_COPY}/sandbox_agent")
    subprocess.run([sys.executable, "-m", "compileall", "-q", AGENT_COPY], check=True)
    sys.path.insert(0, AGENT_COPY)
    from sandbox_agent.desktop.early import xvfb_command

    # The image's /tmp links into the session's home, which the agent makes at start.
    os.makedirs("/home/.tmp/.X11-unix", exist_ok=True)
    os.chmod("/home/.tmp", 0o1777)
    os.chmod("/home/.tmp/.X11-unix", 0o1777)
    env = {**os.environ, "DISPLAY": ":0", "HOME": "/root"}
    read_fd, write_fd = os.pipe()
    xvfb = subprocess.Popen(xvfb_command(":0", 1280, 800, write_fd), pass_fds=(write_fd,))
    os.close(write_fd)
    os.read(read_fd, 16)  # the display number, once Xvfb accepts connections
    others = [
        subprocess.Popen(["openbox"], env=env, stderr=subprocess.DEVNULL),
        subprocess.Popen(
            [
                "xterm",
                "-geometry",
                "100x45+20+20",
                "-e",
                "sh",
                "-c",
                "ls -l /usr/bin | head -44; exec sleep 3600",
            ],
            env=env,
        ),
        subprocess.Popen(["xcalc", "-geometry", "+820+60"], env=env),
    ]
    try:
        rows = Bench(rounds).run()
    finally:
        for process in [*others, xvfb]:
            process.kill()
            process.wait()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, {rounds} rounds per input row")
    print()
    print("| job | implementation | n | p50 ms | p95 ms | note |")
    print("|---|---|---|---|---|---|")
    for job, impl, samples, note in rows:
        p50, p95 = _percentiles(samples)
        print(f"| {job} | {impl} | {len(samples)} | {p50:.4f} | {p95:.4f} | {note} |")
    return 0


class Bench:
    """The measurements, on one ctypes and one python3-xlib connection to ``:0``."""

    def __init__(self, rounds: int) -> None:
        from sandbox_agent.desktop.xlib import XDisplay
        from Xlib import X
        from Xlib import display as xdisplay
        from Xlib.ext import xtest

        self.rounds = rounds
        self.X, self.xtest = X, xtest
        self.ours = XDisplay(":0")
        self.lib = xdisplay.Display(":0")
        self.root = self.lib.screen().root
        self._wait_for_windows(2)

    def _wait_for_windows(self, count: int) -> None:
        deadline = time.monotonic() + 20
        while len(self.ours.window_property(self.ours.root, "_NET_CLIENT_LIST")) < count:
            if time.monotonic() > deadline:
                raise SystemExit("the xterm and xcalc windows did not appear")
            time.sleep(0.05)
        time.sleep(1.0)  # let them draw

    def run(self) -> list[tuple[str, str, list[float], str]]:
        rows: list[tuple[str, str, list[float], str]] = []
        rows += self.input_rows()
        rows += self.property_rows()
        rows += self.capture_rows()
        rows += self.import_rows()
        return rows

    # -- XTEST --------------------------------------------------------------------

    def input_rows(self) -> list[tuple[str, str, list[float], str]]:
        ours, lib, X, xtest = self.ours, self.lib, self.X, self.xtest
        shift = 50  # Shift_L in Xvfb's default map: harmless to tap

        def click_ours() -> None:  # as vm.click: motion, press, release, one round trip
            ours.fake_motion(1250, 780)
            ours.fake_button(1, True)
            ours.fake_button(1, False)
            ours.sync()

        def click_lib() -> None:
            xtest.fake_input(lib, X.MotionNotify, x=1250, y=780)
            xtest.fake_input(lib, X.ButtonPress, 1)
            xtest.fake_input(lib, X.ButtonRelease, 1)
            lib.sync()

        def key_ours() -> None:
            ours.fake_key(shift, True)
            ours.fake_key(shift, False)
            ours.sync()

        def key_lib() -> None:
            xtest.fake_input(lib, X.KeyPress, shift)
            xtest.fake_input(lib, X.KeyRelease, shift)
            lib.sync()

        def taps_ours() -> None:  # as vm.type of 10 characters: 20 key events, one sync
            for _ in range(10):
                ours.fake_key(shift, True)
                ours.fake_key(shift, False)
            ours.sync()

        def taps_lib() -> None:
            for _ in range(10):
                xtest.fake_input(lib, X.KeyPress, shift)
                xtest.fake_input(lib, X.KeyRelease, shift)
            lib.sync()

        rows = []
        for job, pair in [
            ("XTEST click (motion, press, release, sync)", (click_ours, click_lib)),
            ("XTEST key tap (press, release, sync)", (key_ours, key_lib)),
            ("XTEST 10 key taps (20 events, sync)", (taps_ours, taps_lib)),
        ]:
            a, b = _alternate(pair, self.rounds)
            rows += [(job, "ctypes (agent)", a, ""), (job, "python3-xlib", b, "")]
        return rows

    # -- properties and queries -----------------------------------------------------

    def property_rows(self) -> list[tuple[str, str, list[float], str]]:
        ours, lib, root, X = self.ours, self.lib, self.root, self.X
        rows = []

        def property_lib(name: str) -> Callable[[], list[int]]:
            def read() -> list[int]:
                reply = root.get_property(lib.intern_atom(name), X.AnyPropertyType, 0, 1 << 16)
                if reply is None or reply.format != 32:
                    return []
                return list(reply.value)

            return read

        def owner_lib() -> int:
            owner = lib.get_selection_owner(lib.intern_atom("WM_S0"))
            return int(owner if isinstance(owner, int) else owner.id)

        def pointer_lib() -> tuple[int, int]:
            reply = root.query_pointer()
            return reply.root_x, reply.root_y

        for name in ("_NET_CLIENT_LIST", "_NET_ACTIVE_WINDOW"):
            both = (lambda name=name: ours.window_property(ours.root, name), property_lib(name))
            _same(both, f"{name} property")
            a, b = _alternate(both, self.rounds)
            job = f"read {name} of the root"
            rows += [(job, "ctypes (agent)", a, ""), (job, "python3-xlib", b, "")]
        for job, pair in [
            ("WM_S0 selection owner", (lambda: ours.selection_owner("WM_S0"), owner_lib)),
            ("pointer position (QueryPointer)", (ours.pointer, pointer_lib)),
        ]:
            _same(pair, job)
            a, b = _alternate(pair, self.rounds)
            rows += [(job, "ctypes (agent)", a, ""), (job, "python3-xlib", b, "")]
        return rows

    # -- the screen -------------------------------------------------------------------

    def capture_rows(self) -> list[tuple[str, str, list[float], str]]:
        from PIL import Image
        from sandbox_agent.desktop.png import bgrx_to_png, rgb_to_png

        ours, root, X = self.ours, self.root, self.X
        shots = max(30, self.rounds // 10)
        frame = ours.capture()  # through MIT-SHM: the agent's first capture sets it up
        assert ours.uses_shared_memory, "MIT-SHM is not in use"
        width, height = frame.width, frame.height

        def xgetimage_ours() -> bytes:
            # The agent's fallback path, forced: the SHM image set aside for a moment.
            shm, ours._shm = ours._shm, None
            try:
                return bytes(ours.capture().pixels)
            finally:
                ours._shm = shm

        def getimage_lib() -> bytes:
            return bytes(root.get_image(0, 0, width, height, X.ZPixmap, 0xFFFFFFFF).data)

        grabs = _alternate((lambda: ours.capture().pixels, xgetimage_ours, getimage_lib), shots)
        assert xgetimage_ours() == ours.capture().pixels == getimage_lib()
        job = "grab 1280x800 screen"
        rows = [
            (job, "ctypes MIT-SHM (agent)", grabs[0], "4 MB copied once from shared memory"),
            (job, "ctypes XGetImage (agent's fallback)", grabs[1], "4 MB through the socket"),
            (job, "python3-xlib get_image", grabs[2], "no MIT-SHM in python3-xlib"),
        ]

        pixels, stride = frame.pixels, frame.stride

        def png_ours() -> bytes:
            return bytes(bgrx_to_png(pixels, width, height, stride=stride))

        def pil_image() -> Any:
            return Image.frombuffer("RGB", (width, height), pixels, "raw", "BGRX", stride, 1)

        def png_lib() -> bytes:
            out = io.BytesIO()
            pil_image().save(out, format="PNG", compress_level=1)
            return out.getvalue()

        def jpeg_lib() -> bytes:
            out = io.BytesIO()
            pil_image().save(out, format="JPEG", quality=75)
            return out.getvalue()

        def rgb_slices() -> bytes:  # the agent's channel swap before it used PIL's
            rgb = bytearray(3 * width * height)
            rgb[0::3], rgb[1::3], rgb[2::3] = pixels[2::4], pixels[1::4], pixels[0::4]
            return bytes(rgb)

        def png_slices() -> bytes:
            return bytes(rgb_to_png(rgb_slices(), width, height))

        def rgb_lib() -> bytes:
            return bytes(pil_image().tobytes())

        ours_png, lib_png = png_ours(), png_lib()
        assert rgb_slices() == rgb_lib()
        assert png_slices() == ours_png
        decoded = Image.open(io.BytesIO(ours_png))
        assert (
            decoded.tobytes() == Image.open(io.BytesIO(lib_png)).tobytes() == pil_image().tobytes()
        )
        encodes = _alternate((png_ours, png_slices, png_lib, jpeg_lib, rgb_slices, rgb_lib), shots)
        job = "encode the 1280x800 screen"
        rows += [
            (job, "PNG, agent's png module (zlib level 1)", encodes[0], f"{len(ours_png)} bytes"),
            (job, "PNG, slices + the same zlib framing", encodes[1], f"{len(ours_png)} bytes"),
            (job, "PNG, python3-pil compress_level=1", encodes[2], f"{len(lib_png)} bytes"),
            (job, "JPEG q75, python3-pil (reference)", encodes[3], f"{len(jpeg_lib())} bytes"),
        ]
        job = "its first step: BGRX to RGB"
        rows += [
            (job, "three extended-slice copies", encodes[4], ""),
            (job, "python3-pil raw BGRX decoder", encodes[5], ""),
        ]
        return rows

    # -- start-up ---------------------------------------------------------------------

    def import_rows(self) -> list[tuple[str, str, list[float], str]]:
        """What each way adds to a new agent's start: timed in fresh processes that
        have imported the agent already (its toolsets' common modules with it)."""
        job = "import (and connect) in a fresh python3 that has the agent loaded"
        statements = {
            "ctypes (agent): xlib module, XDisplay(':0')": "from sandbox_agent.desktop import "
            "xlib; xlib.XDisplay(':0')",
            "python3-xlib: display, xtest, Display(':0')": "import Xlib.display, Xlib.ext.xtest; "
            "Xlib.display.Display(':0')",
            "agent's png module (imports PIL.Image)": "import sandbox_agent.desktop.png",
            "python3-pil: Image, PNG plugin (its encoder)": "import PIL.Image, PIL.PngImagePlugin",
        }
        template = (
            f"import sys, time; sys.path.insert(0, {AGENT_COPY!r}); import sandbox_agent, "
            "sandbox_agent.code_runner, sandbox_agent.desktop.early, sandbox_agent.desktop.keys; "
            "started = time.perf_counter(); {code}; print((time.perf_counter() - started) * 1000)"
        )
        samples: list[list[float]] = [[] for _ in statements]
        for _ in range(max(20, self.rounds // 50)):
            for index, code in enumerate(statements.values()):
                output = subprocess.run(
                    [sys.executable, "-c", template.replace("{code}", code)],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
                samples[index].append(float(output))
        return [(job, impl, times, "") for impl, times in zip(statements, samples, strict=True)]


def _alternate(functions: tuple[Callable[[], object], ...], rounds: int) -> list[list[float]]:
    """Time each of `functions` `rounds` times, one call of each in turn (after a warm-up)."""
    for function in functions:
        for _ in range(min(50, max(3, rounds // 20))):
            function()
    samples: list[list[float]] = [[] for _ in functions]
    for _ in range(rounds):
        for index, function in enumerate(functions):
            started = time.perf_counter_ns()
            function()
            samples[index].append((time.perf_counter_ns() - started) / 1e6)
    return samples


def _same(pair: tuple[Callable[[], object], Callable[[], object]], what: str) -> None:
    first, second = pair[0](), pair[1]()
    if first != second:
        raise SystemExit(f"{what}: ctypes gives {first!r}, python3-xlib {second!r}")


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[
        min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))
    ]


if __name__ == "__main__":
    sys.exit(main())
