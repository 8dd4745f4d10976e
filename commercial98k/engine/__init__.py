"""How stages run: the ``Stage`` contract, the runner, local threads and the Ray executor."""
