"""Notebook display: `explain` results that show themselves as the interactive view.

`lig_jax.explain` and `lig_jax.explain_batch` (the package's face) are `api.explain` and
`api.explain_batch` with their dicts wrapped as `Explanation`s; the api layer itself stays
below the viewer and returns plain dicts.
"""

from __future__ import annotations

import functools
from typing import Any

from .. import api


class Explanation(dict):
    """The result dict of `explain` (docs/spec.md §9 schema, unchanged: it *is* a dict, so
    `json.dumps`, indexing and `==` work as before). In Jupyter it displays itself as the
    interactive flow viewer of `lig-jax view` (an iframe holding the self-contained page).
    """

    def _repr_html_(self) -> str:
        from .page import notebook_html

        return notebook_html(dict(self))


@functools.wraps(api.explain)
def explain(text: str, **kwargs: Any) -> Explanation:
    return Explanation(api.explain(text, **kwargs))


@functools.wraps(api.explain_batch)
def explain_batch(texts, **kwargs: Any) -> list[Explanation | None]:
    on_result = kwargs.pop("on_result", None)
    wrap = None if on_result is None else (lambda i, r: on_result(i, Explanation(r)))
    return [None if r is None else Explanation(r)
            for r in api.explain_batch(texts, on_result=wrap, **kwargs)]
