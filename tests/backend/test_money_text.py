"""The one money display rule (backend.costs.money_text) used by every page and the CLI."""
from __future__ import annotations

import pytest

from backend.costs import money_text, shows_cents


@pytest.mark.parametrize("amount, text", [
    (None, "—"), (0, "$0.00"), (0.0, "$0.00"), (0.00004, "< $0.01"), (0.0012, "< $0.01"),
    (0.00999, "< $0.01"), (0.01, "$0.01"), (0.014, "$0.01"), (0.5, "$0.50"), (12.5, "$12.50"),
    (1234.567, "$1,234.57"), (-2.5, "-$2.50"),
])
def test_money_text(amount, text):
    assert money_text(amount) == text


@pytest.mark.parametrize("amount, cents", [(None, False), (0, True), (0.004, False),
                                           (0.01, True), (3.0, True)])
def test_shows_cents(amount, cents):
    assert shows_cents(amount) is cents


def test_cli_uses_the_same_rule():
    from backend.cli.common import money

    assert [money(a) for a in (None, 0.0004, 3)] == ["—", "< $0.01", "$3.00"]
