"""Finding the keycode of a keysym and lending spare keycodes: no X server needed."""

from __future__ import annotations

import pytest

from sandbox.agent.desktop.keymap import Keymap, SpareKeycodes, Stroke

A, CAP_A, ONE, EXCLAM, COMMA, LESS, GREATER = 0x61, 0x41, 0x31, 0x21, 0x2C, 0x3C, 0x3E
SHIFT_L, RETURN, E_ACUTE = 0xFFE1, 0xFF0D, 0xE9

# Keycodes 8.. as XGetKeyboardMapping lists them, 3 columns each (the third
# column, another group, is never pressed).
TABLE = [
    [A, CAP_A, 0],  # 8
    [ONE, EXCLAM, 0],  # 9
    [COMMA, LESS, 0],  # 10: `<` needs Shift here ...
    [0, 0, 0],  # 11: spare
    [LESS, GREATER, 0],  # 12: ... but not on this key
    [SHIFT_L, 0, 0],  # 13
    [RETURN, 0, 0],  # 14
    [0, 0, E_ACUTE],  # 15: `é` only in another group: not typeable as is
    [0, 0, 0],  # 16: spare
]


@pytest.fixture
def keymap() -> Keymap:
    return Keymap(8, 3, [keysym for row in TABLE for keysym in row])


def test_unshifted_and_shifted_keysyms(keymap: Keymap) -> None:
    assert keymap.stroke(A) == Stroke(8, shift=False)
    assert keymap.stroke(CAP_A) == Stroke(8, shift=True)
    assert keymap.stroke(EXCLAM) == Stroke(9, shift=True)
    assert keymap.stroke(RETURN) == Stroke(14, shift=False)


def test_a_key_without_shift_is_preferred(keymap: Keymap) -> None:
    assert keymap.stroke(LESS) == Stroke(12, shift=False)
    assert keymap.stroke(GREATER) == Stroke(12, shift=True)


def test_keysyms_of_other_groups_or_nowhere_have_no_stroke(keymap: Keymap) -> None:
    assert keymap.stroke(E_ACUTE) is None
    assert keymap.stroke(0x10020AC) is None


def test_keycodes_without_any_keysym_are_spare(keymap: Keymap) -> None:
    assert keymap.empty_keycodes == [11, 16]


def test_a_bad_table_is_refused() -> None:
    with pytest.raises(ValueError, match="keysyms_per_keycode"):
        Keymap(8, 0, [])
    with pytest.raises(ValueError, match="spare keycode"):
        SpareKeycodes([])


def test_spare_keycodes_are_bound_once_and_reused() -> None:
    spare = SpareKeycodes([11, 16], settle_s=0.05)
    assert spare.bind(E_ACUTE, now=1.0) == (11, True, 0.0)
    assert spare.bind(0x10020AC, now=1.0) == (16, True, 0.0)
    # Already bound: same keycode, no rebinding.
    assert spare.bind(E_ACUTE, now=1.01) == (11, False, 0.0)
    assert spare.keycode_of(0x10020AC) == 16
    assert spare.bound == {0x10020AC: 16, E_ACUTE: 11}


def test_the_least_recently_used_binding_goes_after_it_settled() -> None:
    spare = SpareKeycodes([11, 16], settle_s=0.05)
    spare.bind(E_ACUTE, now=1.0)
    spare.bind(0x10020AC, now=1.0)
    spare.touch(E_ACUTE, now=1.02)  # é used again: € is now the oldest
    keycode, rebind, wait = spare.bind(0x10003BB, now=1.03)
    assert (keycode, rebind) == (16, True)
    assert wait == pytest.approx(0.02)  # € was pressed at 1.0; rest until 1.05
    assert spare.keycode_of(0x10020AC) is None
    keycode, rebind, wait = spare.bind(0x1004E2D, now=5.0)
    assert (keycode, rebind, wait) == (11, True, 0.0)  # long rested: no wait


def test_a_failed_binding_frees_its_keycode() -> None:
    spare = SpareKeycodes([11])
    spare.bind(E_ACUTE, now=1.0)
    spare.unbind(E_ACUTE)
    assert spare.bound == {}
    assert spare.bind(0x10020AC, now=1.0) == (11, True, 0.0)
