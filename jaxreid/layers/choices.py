"""One error for an option outside its fixed set of values."""

from typing import Any, Iterable


def check_choice(what: str, value: Any, choices: Iterable[Any], note: str = '') -> None:
  """Raises ``ValueError('Unknown {what} {value!r}; valid choices: a, b{note}.')``
  unless `value` is one of `choices` (listed in their given order)."""
  choices = tuple(choices)
  if value not in choices:
    raise ValueError(f'Unknown {what} {value!r}; valid choices: '
                     f'{", ".join(str(c) for c in choices)}{note}.')
