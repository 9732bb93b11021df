"""The client API contract: JSON over websockets, typed and validated with msgspec."""
