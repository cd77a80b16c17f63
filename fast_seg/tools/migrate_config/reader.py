"""Reads the TF1 project's protobuf text format into a generic tree.

Its protos are not installed here, so there is no schema to parse against:
the text is read into Message / Field / Scalar nodes that keep every field,
in file order and with its line, so that the migration can map or report
each one and name the line of any value it cannot read.
"""

import collections
import re

NOT_TF1 = "not a fast-semantic-segmentation (TF1) pipeline config"

Scalar = collections.namedtuple("Scalar", "text quoted")
Field = collections.namedtuple("Field", "name value line")
_Token = collections.namedtuple("_Token", "kind text line")


class Message:
  """A parsed `{ ... }` block: its fields in file order (names may repeat)."""

  def __init__(self, fields, line):
    self.fields = fields
    self.line = line

  def all(self, name):
    return [f for f in self.fields if f.name == name]


_TOKENS = re.compile(r"""
    (?P<skip>\s+|\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<word>[\w.+-]+)
  | (?P<mark>[{}<>\[\]:,;])
""", re.VERBOSE)
_NAME = re.compile(r"^[A-Za-z_]\w*$")
_CLOSERS = {"{": "}", "<": ">"}
# Blocks nested deeper than this are refused: TF1 configs nest about 6 deep,
# and Python's recursion limit would end the parse in a RecursionError.
MAX_DEPTH = 100
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r"}


def _tokenize(text, source):
  """Text-format tokens; a character no config has means it is no config."""
  tokens, pos, line = [], 0, 1
  while pos < len(text):
    match = _TOKENS.match(text, pos)
    if not match:
      raise ValueError(f"{source}: line {line}: unexpected {text[pos]!r}; {NOT_TF1}")
    if match.lastgroup != "skip":
      tokens.append(_Token(match.lastgroup, match.group(), line))
    line += match.group().count("\n")
    pos = match.end()
  return tokens


class _Parser:
  """Recursive descent: `name: scalar`, `name: [a, b]`, `name [:] { ... }`.

  Tolerant where TF1's own parser was (optional colon before a block,
  `< >` blocks, separators, single quotes, enum words) so that every config
  it read is read here; strict about structure, so other files are refused.
  """

  def __init__(self, tokens, source):
    self._tokens, self._pos, self._source = tokens, 0, source
    self._depth = 0

  def _peek(self, text=None):
    token = self._tokens[self._pos] if self._pos < len(self._tokens) else None
    return token if text is None or (token and token.text == text) else None

  def _take(self, what):
    token = self._peek()
    if token is None:
      raise self._error(None, f"the file ends where {what} should be")
    self._pos += 1
    return token

  def _error(self, token, message):
    line = token.line if token else (self._tokens[-1].line if self._tokens else 1)
    return ValueError(f"{self._source}: line {line}: {message}; {NOT_TF1}")

  def message(self, closer=None, line=1):
    fields = []
    while True:
      token = self._peek()
      if token is None:
        if closer:
          raise self._error(None, f"a '{closer}' is missing")
        return Message(fields, line)
      if closer and token.text == closer:
        self._pos += 1
        return Message(fields, line)
      fields.extend(self._field())

  def _nested(self, opener, line):
    """The block `opener` starts, within MAX_DEPTH."""
    if self._depth >= MAX_DEPTH:
      raise self._error(opener, f"blocks nested deeper than {MAX_DEPTH}")
    self._depth += 1
    try:
      return self.message(_CLOSERS[opener.text], line)
    finally:
      self._depth -= 1

  def _field(self):
    name = self._take("a field name")
    if name.kind != "word" or not _NAME.match(name.text):
      raise self._error(name, f"expected a field name, got {name.text!r}")
    colon = bool(self._peek(":"))
    self._pos += colon
    token = self._take(f"a value of {name.text}")
    if token.text in _CLOSERS:
      values = [self._nested(token, name.line)]
    elif colon and token.text == "[":
      values = self._list(name)
    elif colon and token.kind in ("word", "string"):
      values = [self._scalar(token)]
    else:
      raise self._error(token, f"expected ': value' or '{{' after {name.text}")
    if self._peek(",") or self._peek(";"):
      self._pos += 1
    return [Field(name.text, value, name.line) for value in values]

  def _list(self, name):
    values = []
    while not self._peek("]"):
      token = self._take(f"the end of the list {name.text}")
      if token.text in _CLOSERS:
        values.append(self._nested(token, token.line))
      elif token.kind in ("word", "string"):
        values.append(self._scalar(token))
      else:
        raise self._error(token, f"unexpected {token.text!r} in the list {name.text}")
      if self._peek(","):
        self._pos += 1
    self._pos += 1
    return values

  def _scalar(self, token):
    if token.kind == "word":
      return Scalar(token.text, False)
    text = _unquote(token.text)
    while self._peek() and self._peek().kind == "string":  # "a" "b" is "ab"
      text += _unquote(self._take("a string").text)
    return Scalar(text, True)


def _unquote(quoted):
  return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), quoted[1:-1])


def parse_tf1(text, source):
  """The TF1 config as a Message tree; ValueError naming `source` if none."""
  return _Parser(_tokenize(text, source), source).message()
