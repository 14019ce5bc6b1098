"""The life of a DMP: creation from the INS identity, access management, closure, destruction,
retention: the operations (``operations.py``, run behind the repository) and their data shapes."""
