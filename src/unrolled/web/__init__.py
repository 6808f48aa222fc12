"""The viewer: a local web page over a checkpoint and a text, in the spirit of LSTMVis.

    explorer.py   the model, its texts, and the understanding tools over them (no web framework)
    sampling.py   sampled text as a stream of pieces
    app.py        the Starlette app: the page, its static files and the JSON API (docs/viewer.md)
    server.py     `unrolled serve`: load, bind to localhost, run uvicorn
    static/       the page: plain HTML, CSS and JavaScript, no build step, nothing from a CDN

Nothing else in unrolled imports this package; it needs the `web` extra (starlette, uvicorn).
"""
