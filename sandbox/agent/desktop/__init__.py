"""The X11 desktop behind the ``desktop`` toolset (``vm`` sessions).

Modules:
    early: the image's entry point; starts Xvfb while the agent is still loading.
    session: Xvfb (started or adopted), the window manager, the connection.
    xlib: one persistent X connection: XTEST input, window properties, captures.
    libx11: ctypes prototypes, structures and error hooks of libX11, libXtst, libXext.
    grab: screen captures through MIT-SHM (or XGetImage) into `Frame`s.
    keyboard: typing and key presses over that connection.
    keys: key names (X keysym names, pyautogui names) and characters to keysyms.
    keymap: which keycode (and Shift) produces a keysym; spare keycodes for the rest.
    png: BGRX framebuffer bytes to PNG: python3-pil's channel swap, then zlib.
    pyautogui_code: which pyautogui programs are accepted, and the runner that runs them.

`keys`, `keymap`, `png` and `pyautogui_code` are pure logic, tested without an X
server; the rest is tested on real desktops (tests/integration/test_desktop.py).
The agent is copied alone into images and imports only the standard library,
except here: the desktop image's Debian packages serve these modules where they
are measured as fast as hand-written code or faster (python3-pil in `png`). X is
reached through ctypes rather than the image's python3-xlib, which measured 1.5
to 3 times slower per request and has no MIT-SHM (docs/benchmarks.md, "Desktop:
hand-written X code vs Debian's libraries").
"""
