from __future__ import annotations

import inference


def test_public_names_resolve() -> None:
    assert sorted(inference.__all__) == sorted(inference._EXPORTS)
    for name in inference.__all__:
        value = getattr(inference, name)
        assert value.__module__.startswith("inference."), name
