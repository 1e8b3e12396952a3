"""Key names and characters to X keysyms.

A key is named the way xdotool names it (an X keysym name: ``Return``,
``Page_Down``, ``ctrl+c`` chords) or the way pyautogui does (``enter``, ``pgdn``,
``win``), or is a single character (``a``, ``A``, ``é``, ``€``). Characters
become keysyms by the X rules: Latin-1 code points are their own keysym, anything
else is ``0x01000000 + code point``, so every character has a keysym even when
no key of the current layout produces it (the keyboard then borrows a spare
keycode for it, see `keymap`).

Keysym names outside the table below are looked up with libX11's
``XStringToKeysym`` when the agent runs on a display; the table keeps the
common names working (and testable) without one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

# X keysym names and values (X11/keysymdef.h and XF86keysym.h) of every key the
# pyautogui names below refer to, plus the usual xdotool spellings.
KEYSYMS: dict[str, int] = {
    "BackSpace": 0xFF08,
    "Tab": 0xFF09,
    "ISO_Left_Tab": 0xFE20,
    "Linefeed": 0xFF0A,
    "Clear": 0xFF0B,
    "Return": 0xFF0D,
    "Pause": 0xFF13,
    "Scroll_Lock": 0xFF14,
    "Sys_Req": 0xFF15,
    "Escape": 0xFF1B,
    "Delete": 0xFFFF,
    "Multi_key": 0xFF20,
    "Kanji": 0xFF21,
    "Muhenkan": 0xFF22,
    "Henkan": 0xFF23,
    "Henkan_Mode": 0xFF23,
    "Hiragana_Katakana": 0xFF27,
    "Kana_Shift": 0xFF2E,
    "Hangul": 0xFF31,
    "Hangul_Hanja": 0xFF34,
    "Home": 0xFF50,
    "Left": 0xFF51,
    "Up": 0xFF52,
    "Right": 0xFF53,
    "Down": 0xFF54,
    "Prior": 0xFF55,
    "Page_Up": 0xFF55,
    "Next": 0xFF56,
    "Page_Down": 0xFF56,
    "End": 0xFF57,
    "Begin": 0xFF58,
    "Select": 0xFF60,
    "Print": 0xFF61,
    "Execute": 0xFF62,
    "Insert": 0xFF63,
    "Undo": 0xFF65,
    "Redo": 0xFF66,
    "Menu": 0xFF67,
    "Find": 0xFF68,
    "Cancel": 0xFF69,
    "Help": 0xFF6A,
    "Break": 0xFF6B,
    "Mode_switch": 0xFF7E,
    "Num_Lock": 0xFF7F,
    "KP_Space": 0xFF80,
    "KP_Tab": 0xFF89,
    "KP_Enter": 0xFF8D,
    "KP_Home": 0xFF95,
    "KP_Left": 0xFF96,
    "KP_Up": 0xFF97,
    "KP_Right": 0xFF98,
    "KP_Down": 0xFF99,
    "KP_Prior": 0xFF9A,
    "KP_Page_Up": 0xFF9A,
    "KP_Next": 0xFF9B,
    "KP_Page_Down": 0xFF9B,
    "KP_End": 0xFF9C,
    "KP_Begin": 0xFF9D,
    "KP_Insert": 0xFF9E,
    "KP_Delete": 0xFF9F,
    "KP_Equal": 0xFFBD,
    "KP_Multiply": 0xFFAA,
    "KP_Add": 0xFFAB,
    "KP_Separator": 0xFFAC,
    "KP_Subtract": 0xFFAD,
    "KP_Decimal": 0xFFAE,
    "KP_Divide": 0xFFAF,
    **{f"KP_{digit}": 0xFFB0 + digit for digit in range(10)},
    **{f"F{number}": 0xFFBE + number - 1 for number in range(1, 36)},
    "Shift_L": 0xFFE1,
    "Shift_R": 0xFFE2,
    "Control_L": 0xFFE3,
    "Control_R": 0xFFE4,
    "Caps_Lock": 0xFFE5,
    "Shift_Lock": 0xFFE6,
    "Meta_L": 0xFFE7,
    "Meta_R": 0xFFE8,
    "Alt_L": 0xFFE9,
    "Alt_R": 0xFFEA,
    "Super_L": 0xFFEB,
    "Super_R": 0xFFEC,
    "Hyper_L": 0xFFED,
    "Hyper_R": 0xFFEE,
    "ISO_Level3_Shift": 0xFE03,
    "space": 0x20,
    "XF86AudioLowerVolume": 0x1008FF11,
    "XF86AudioMute": 0x1008FF12,
    "XF86AudioRaiseVolume": 0x1008FF13,
    "XF86AudioPlay": 0x1008FF14,
    "XF86AudioStop": 0x1008FF15,
    "XF86AudioPrev": 0x1008FF16,
    "XF86AudioNext": 0x1008FF17,
    "XF86HomePage": 0x1008FF18,
    "XF86Mail": 0x1008FF19,
    "XF86Search": 0x1008FF1B,
    "XF86Back": 0x1008FF26,
    "XF86Forward": 0x1008FF27,
    "XF86Stop": 0x1008FF28,
    "XF86Refresh": 0x1008FF29,
    "XF86Sleep": 0x1008FF2F,
    "XF86Favorites": 0x1008FF30,
    "XF86AudioMedia": 0x1008FF32,
    "XF86Launch0": 0x1008FF40,
    "XF86Launch1": 0x1008FF41,
    "XF86Launch2": 0x1008FF42,
}

# pyautogui's key names (its KEYBOARD_KEYS, lower case) to X keysym names.
PYAUTOGUI_KEYS: dict[str, str] = {
    "enter": "Return",
    "return": "Return",
    "tab": "Tab",
    "space": "space",
    "backspace": "BackSpace",
    "esc": "Escape",
    "escape": "Escape",
    "del": "Delete",
    "delete": "Delete",
    "insert": "Insert",
    "home": "Home",
    "end": "End",
    "pageup": "Page_Up",
    "pagedown": "Page_Down",
    "pgup": "Page_Up",
    "pgdn": "Page_Down",
    "up": "Up",
    "down": "Down",
    "left": "Left",
    "right": "Right",
    "shift": "Shift_L",
    "shiftleft": "Shift_L",
    "shiftright": "Shift_R",
    "ctrl": "Control_L",
    "ctrlleft": "Control_L",
    "ctrlright": "Control_R",
    "control": "Control_L",
    "alt": "Alt_L",
    "altleft": "Alt_L",
    "altright": "Alt_R",
    "option": "Alt_L",
    "optionleft": "Alt_L",
    "optionright": "Alt_R",
    "win": "Super_L",
    "winleft": "Super_L",
    "winright": "Super_R",
    "super": "Super_L",
    "command": "Super_L",
    "cmd": "Super_L",
    "meta": "Meta_L",
    "apps": "Menu",
    "menu": "Menu",
    "capslock": "Caps_Lock",
    "numlock": "Num_Lock",
    "scrolllock": "Scroll_Lock",
    "pause": "Pause",
    "print": "Print",
    "printscreen": "Print",
    "prntscrn": "Print",
    "prtsc": "Print",
    "prtscr": "Print",
    "select": "Select",
    "execute": "Execute",
    "help": "Help",
    "clear": "Clear",
    "separator": "KP_Separator",
    "add": "KP_Add",
    "subtract": "KP_Subtract",
    "multiply": "KP_Multiply",
    "divide": "KP_Divide",
    "decimal": "KP_Decimal",
    **{f"num{digit}": f"KP_{digit}" for digit in range(10)},
    **{f"f{number}": f"F{number}" for number in range(1, 25)},
    "volumeup": "XF86AudioRaiseVolume",
    "volumedown": "XF86AudioLowerVolume",
    "volumemute": "XF86AudioMute",
    "playpause": "XF86AudioPlay",
    "stop": "XF86AudioStop",
    "nexttrack": "XF86AudioNext",
    "prevtrack": "XF86AudioPrev",
    "browserback": "XF86Back",
    "browserforward": "XF86Forward",
    "browserrefresh": "XF86Refresh",
    "browserstop": "XF86Stop",
    "browsersearch": "XF86Search",
    "browserfavorites": "XF86Favorites",
    "browserhome": "XF86HomePage",
    "launchmail": "XF86Mail",
    "launchmediaselect": "XF86AudioMedia",
    "launchapp1": "XF86Launch0",
    "launchapp2": "XF86Launch1",
    "sleep": "XF86Sleep",
    "kanji": "Kanji",
    "hanja": "Hangul_Hanja",
    "hangul": "Hangul",
    "hanguel": "Hangul",
    "kana": "Hiragana_Katakana",
    "convert": "Henkan",
    "nonconvert": "Muhenkan",
    "modechange": "Mode_switch",
}

# Control characters a keyboard can produce, for `type` and single-character keys.
_CONTROL_CHARACTERS: dict[str, str] = {
    "\b": "BackSpace",
    "\t": "Tab",
    "\n": "Return",
    "\r": "Return",
    "\x1b": "Escape",
    "\x7f": "Delete",
}

_UNICODE_KEYSYM_OFFSET = 0x01000000
_KEYSYMS_FOLDED = {name.lower(): value for name, value in KEYSYMS.items()}


class UnknownKey(ValueError):
    """A key name that is neither an X keysym name, a pyautogui name nor a character."""


@dataclass(frozen=True)
class Key:
    """One key to press: its keysym and the name it was asked for by."""

    keysym: int
    name: str


KeysymLookup = Callable[[str], int]
"""libX11's ``XStringToKeysym``: the keysym of a name, 0 for none."""


def character_keysym(char: str) -> int:
    """The keysym that types `char`.

    Raises:
        UnknownKey: `char` is a control character no key produces, or a lone surrogate.
    """
    control = _CONTROL_CHARACTERS.get(char)
    if control is not None:
        return KEYSYMS[control]
    code = ord(char)
    if code < 0x20 or 0x80 <= code < 0xA0:
        raise UnknownKey(f"control character {char!r} has no key")
    if 0xD800 <= code <= 0xDFFF:
        raise UnknownKey(f"{char!r} is a lone surrogate, not a character")
    if code <= 0xFF:
        return code  # Latin-1 keysyms are their code points
    return _UNICODE_KEYSYM_OFFSET + code


def resolve_key(name: str, lookup: KeysymLookup | None = None) -> Key:
    """The key `name` means: a character, a pyautogui name or an X keysym name.

    Multi-character names are tried as pyautogui names (any case) first, then as
    exact keysym names (the table, then `lookup`), then as keysym names in any
    case, so ``enter``, ``Return``, ``RETURN``, ``page_down`` and ``pgdn`` all work.

    Raises:
        UnknownKey: Nothing matches.
    """
    if len(name) == 1:
        return Key(character_keysym(name), name)
    folded = name.lower()
    x_name = PYAUTOGUI_KEYS.get(folded)
    if x_name is not None:
        return Key(KEYSYMS[x_name], name)
    keysym = KEYSYMS.get(name)
    if keysym is None and lookup is not None:
        keysym = lookup(name) or None
    if keysym is None:
        keysym = _KEYSYMS_FOLDED.get(folded)
    if keysym is None:
        raise UnknownKey(
            f"unknown key {name!r}: use an X keysym name (Return, Page_Down, F5, "
            "Control_L), a pyautogui name (enter, pgdn, f5, ctrl, alt, shift, win) "
            "or a single character"
        )
    return Key(keysym, name)


def split_chord(name: str) -> list[str]:
    """The keys of an xdotool-style chord: ``ctrl+shift+t`` -> ``[ctrl, shift, t]``.

    A lone ``+`` and a trailing ``++`` (``ctrl++``) mean the plus key itself.

    Raises:
        UnknownKey: An empty part, as in ``ctrl+`` or ``+a``.
    """
    if name == "+" or "+" not in name:
        return [name]
    parts = [*name[:-2].split("+"), "+"] if name.endswith("++") else name.split("+")
    if any(not part for part in parts):
        raise UnknownKey(f"malformed key chord {name!r}: write keys joined by '+', e.g. ctrl+c")
    return parts
