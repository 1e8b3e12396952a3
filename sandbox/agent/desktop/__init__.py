"""The X11 desktop behind the ``desktop`` toolset (``vm`` sessions).

Modules:
    early: the image's entry point; starts Xvfb while the agent is still loading.
    session: Xvfb (started or adopted), the window manager, the connection.
    xlib: ctypes bindings of libX11, XTEST and MIT-SHM over one persistent connection.
    keyboard: typing and key presses over that connection.
    keys: key names (X keysym names, pyautogui names) and characters to keysyms.
    keymap: which keycode (and Shift) produces a keysym; spare keycodes for the rest.
    png: BGRX framebuffer bytes to PNG, with the standard library's zlib.
    pyautogui_code: which pyautogui programs are accepted, and the runner that runs them.

`keys`, `keymap`, `png` and `pyautogui_code` are pure logic, tested without an X
server; the rest is tested on real desktops (tests/integration/test_desktop.py).
The agent stays standard-library only (it is copied alone into images), so X is
reached through ctypes rather than python-xlib, which also keeps a call down to a
few microseconds of Python.
"""
