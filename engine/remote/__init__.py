"""GPU workers on other machines, through Redis Streams: the transport (`transport`), what travels (`wire`), the
bot's side (`pool`, an `Executor`) and the worker's (`worker`). The worker imports nothing of the bot's pool."""
