"""The Discord side of Easel: client, job store, reply rendering, buttons and the error handler."""
