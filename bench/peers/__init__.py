"""One module per peer. Each exposes ``FIGURES``: figure name → ``fn(quick) ->
{metric: [values]}`` (run inside a fresh worker process), and may expose
``unavailable() -> str | None`` saying why the peer cannot run here."""
