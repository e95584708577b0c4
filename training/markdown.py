"""Text from the data (labels, model names, warnings quoting them) placed in a Markdown report."""

from __future__ import annotations

import re

# What Markdown (CommonMark and GitHub/GitLab/Gitea tables) reads as markup inside a line: a table
# cell's bar, emphasis, code, links and images, raw HTML and entities, strikethrough. Each is
# written with a backslash before it, which renders as the character itself.
_MARKUP = re.compile(r"([\\`*_\[\]<>!|~&])")
_LINE_BREAKS = re.compile(r"[\r\n\u2028\u2029]+")


def md_text(text: object) -> str:
    """``text`` as literal Markdown inline text, safe in a table cell.

    A department typed ``市住建局|城管`` (a joint dispatch written with a bar) split its table row
    into one cell too many, shifting its figures a column; a label holding ``![t](http://…)`` or
    ``<img …>`` was rendered as an image or a tag wherever the report was viewed. Line breaks
    become spaces, as a line break ends a table row.
    """
    return _MARKUP.sub(r"\\\1", _LINE_BREAKS.sub(" ", str(text)))


# What may stay as written in a link destination: anything else (a space, which ends it; a
# parenthesis; < > & \ % ; a control or whitespace character) is percent-encoded.
_URL_SAFE = set("-._~!$'*+,;=:@/")


def md_url(name: str) -> str:
    """A relative file name as a Markdown link or image destination.

    ``![plot](评估 12月.reliability.png)`` is no image in CommonMark (a destination ends at a space,
    and parentheses must balance): a report named with a space showed no plots. Characters
    Markdown would read otherwise are percent-encoded (``评估%2012月.reliability.png``), as every
    renderer decodes them; other letters, Chinese among them, are kept as written.
    """
    return "".join(
        c
        if (c.isalnum() and c.isprintable() and not c.isspace()) or c in _URL_SAFE
        else "".join(f"%{b:02X}" for b in c.encode("utf-8"))
        for c in name
    )
