"""The OpenAI-compatible HTTP endpoint, served by uvicorn from the process's one resident model.

`schemas` is the wire format, `serving` turns requests into generation jobs on worker threads
(with `admission` bounding them), `streaming` shapes their events into responses, `routes`
and `middleware` make the FastAPI app, and `server` binds it.
"""
