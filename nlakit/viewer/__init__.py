"""The explanation viewer: a self-contained HTML explorer of per-row eval tables.

`nlakit view RUN [RUN …]` (see `view.py`); the data it embeds is built in
`payload.py`, the page in `page.py` and `static/`, the JSON export in `export.py`.
"""
