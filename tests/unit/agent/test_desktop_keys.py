"""Key names and characters to keysyms, and chords: no X server needed."""

from __future__ import annotations

import ctypes

import pytest

from sandbox.agent.desktop.keys import (
    KEYSYMS,
    PYAUTOGUI_KEYS,
    UnknownKey,
    character_keysym,
    resolve_key,
    split_chord,
)


@pytest.mark.parametrize(
    ("name", "keysym"),
    [
        ("enter", 0xFF0D),
        ("return", 0xFF0D),
        ("Return", 0xFF0D),
        ("RETURN", 0xFF0D),
        ("ctrl", 0xFFE3),
        ("ctrlright", 0xFFE4),
        ("alt", 0xFFE9),
        ("shift", 0xFFE1),
        ("win", 0xFFEB),
        ("super", 0xFFEB),
        ("Super_L", 0xFFEB),
        ("pagedown", 0xFF56),
        ("pgdn", 0xFF56),
        ("Page_Down", 0xFF56),
        ("page_down", 0xFF56),
        ("Next", 0xFF56),
        ("esc", 0xFF1B),
        ("Escape", 0xFF1B),
        ("backspace", 0xFF08),
        ("BackSpace", 0xFF08),
        ("f1", 0xFFBE),
        ("F5", 0xFFC2),
        ("f12", 0xFFC9),
        ("up", 0xFF52),
        ("Left", 0xFF51),
        ("space", 0x20),
        ("tab", 0xFF09),
        ("delete", 0xFFFF),
        ("num5", 0xFFB5),
        ("multiply", 0xFFAA),  # pyautogui's keypad key, not X's `multiply` (the sign)
        ("volumeup", 0x1008FF13),
    ],
)
def test_names_resolve_to_their_keysyms(name: str, keysym: int) -> None:
    assert resolve_key(name).keysym == keysym
    assert resolve_key(name).name == name


@pytest.mark.parametrize(
    ("char", "keysym"),
    [
        ("a", 0x61),
        ("A", 0x41),
        ("1", 0x31),
        ("!", 0x21),
        (" ", 0x20),
        ("~", 0x7E),
        ("é", 0xE9),  # Latin-1: the code point
        ("ß", 0xDF),
        ("€", 0x10020AC),  # beyond Latin-1: 0x01000000 + code point
        ("λ", 0x10003BB),
        ("中", 0x1004E2D),
        ("😀", 0x101F600),
        ("\n", 0xFF0D),
        ("\r", 0xFF0D),
        ("\t", 0xFF09),
        ("\b", 0xFF08),
        ("\x1b", 0xFF1B),
    ],
)
def test_characters_map_to_keysyms(char: str, keysym: int) -> None:
    assert character_keysym(char) == keysym
    assert resolve_key(char).keysym == keysym


@pytest.mark.parametrize("char", ["\x00", "\x01", "\x85", "\ud800"])
def test_characters_no_key_produces_are_refused(char: str) -> None:
    with pytest.raises(UnknownKey):
        character_keysym(char)


def test_unknown_names_say_what_is_accepted() -> None:
    with pytest.raises(UnknownKey, match=r"unknown key 'nokey'.*pyautogui name.*enter"):
        resolve_key("nokey")


def test_other_keysym_names_go_to_the_lookup() -> None:
    asked: list[str] = []

    def lookup(name: str) -> int:
        asked.append(name)
        return 0x1008FF1D if name == "XF86Calculator" else 0

    assert resolve_key("XF86Calculator", lookup).keysym == 0x1008FF1D
    with pytest.raises(UnknownKey):
        resolve_key("XF86Nothing", lookup)
    assert asked == ["XF86Calculator", "XF86Nothing"]


def test_every_pyautogui_name_points_into_the_table() -> None:
    assert set(PYAUTOGUI_KEYS.values()) <= set(KEYSYMS)
    assert all(name == name.lower() for name in PYAUTOGUI_KEYS)


@pytest.mark.parametrize(
    ("chord", "parts"),
    [
        ("a", ["a"]),
        ("+", ["+"]),
        ("Return", ["Return"]),
        ("ctrl+c", ["ctrl", "c"]),
        ("ctrl+shift+t", ["ctrl", "shift", "t"]),
        ("ctrl++", ["ctrl", "+"]),
        ("Control_L+Alt_L+Delete", ["Control_L", "Alt_L", "Delete"]),
    ],
)
def test_chords_split_into_keys(chord: str, parts: list[str]) -> None:
    assert split_chord(chord) == parts


@pytest.mark.parametrize("chord", ["ctrl+", "+a", "ctrl++c", "a++b+"])
def test_malformed_chords_are_refused(chord: str) -> None:
    with pytest.raises(UnknownKey, match="malformed key chord"):
        split_chord(chord)


def _libx11() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libX11.so.6")
    except OSError:
        return None


@pytest.mark.skipif(_libx11() is None, reason="libX11 is not installed on this host")
def test_the_table_agrees_with_libx11() -> None:
    libx11 = _libx11()
    assert libx11 is not None
    libx11.XStringToKeysym.restype = ctypes.c_ulong
    libx11.XStringToKeysym.argtypes = [ctypes.c_char_p]
    wrong = {
        name: (value, libx11.XStringToKeysym(name.encode()))
        for name, value in KEYSYMS.items()
        if libx11.XStringToKeysym(name.encode()) != value
    }
    assert wrong == {}
