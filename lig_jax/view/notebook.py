"""Notebook display: an `explain` result that shows itself as the interactive view."""

from __future__ import annotations


class Explanation(dict):
    """The result dict of `explain` (spec §9 schema, unchanged: it *is* a dict, so
    `json.dumps`, indexing and `==` work as before). In Jupyter it displays itself as the
    interactive flow viewer of `lig-jax view` (an iframe holding the self-contained page).
    """

    def _repr_html_(self) -> str:
        from .page import notebook_html

        return notebook_html(dict(self))
