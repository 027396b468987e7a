"""The report's templates (the folder templates/ beside this module): the HTML page and the model cards."""

from __future__ import annotations

import functools


@functools.cache
def _environment():
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    # HTML is escaped, markdown is not (a card's text is ours and the metadata YAML's); a missing value fails
    # instead of printing nothing; block tags on their own lines leave no blank line behind.
    return Environment(loader=PackageLoader("cxr.report", "templates"), autoescape=select_autoescape(["html.jinja"]),
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


def render(template: str, **context) -> str:
    return _environment().get_template(template).render(**context)
