"""Text to bytes and back, exactly: UTF-8 for every Python string, and decoding that never breaks a character.

Two details make "every string" true:

- A Python ``str`` may hold *lone surrogates* (code points U+D800..U+DFFF on their own, e.g. from
  ``"\\ud800"`` or a file read with ``errors="surrogateescape"``). Strict UTF-8 refuses them, so the lab
  encodes with ``errors="surrogatepass"``: each one becomes its 3-byte form and decodes back to itself.
- Bytes that are not valid UTF-8 (a model can generate any sequence of byte tokens) decode to U+FFFD,
  the replacement character '\ufffd', one per invalid sequence, as ``errors="replace"`` does.

``StreamDecoder`` turns generated token ids into text as they arrive. A token may end in the middle
of a character (the 4 bytes of an emoji can come as 2 + 2); the incremental decoder keeps the
unfinished bytes until the rest arrives, so no piece of text ever holds half a character or a stray
U+FFFD. Generated text is meant to be printed and saved, so it is always valid Unicode: there, the
bytes of a surrogate (which no UTF-8 file holds, but an untrained model can emit) become U+FFFD too.
"""

import codecs

ERRORS = "minilab-surrogatepass-replace"  # the name of the error handler described above


def _surrogatepass_or_replace(err: UnicodeDecodeError):
    """Decode a lone surrogate's 3 bytes back to it; anything else that is not UTF-8 becomes U+FFFD."""
    try:
        return codecs.lookup_error("surrogatepass")(err)
    except UnicodeDecodeError:
        return codecs.lookup_error("replace")(err)


def _errors() -> str:
    """The handler's name, registered with ``codecs`` the first time it is needed (not at import)."""
    try:
        codecs.lookup_error(ERRORS)
    except LookupError:
        codecs.register_error(ERRORS, _surrogatepass_or_replace)
    return ERRORS


def encode_utf8(text: str) -> bytes:
    """Any Python string as UTF-8 bytes (lone surrogates included)."""
    return text.encode("utf-8", "surrogatepass")


def decode_utf8(data: bytes) -> str:
    """Bytes back to text: exact for whatever ``encode_utf8`` made, U+FFFD for invalid sequences."""
    return data.decode("utf-8", _errors())


class StreamDecoder:
    """Token ids in, valid text out, piece by piece; bytes of an unfinished character wait for the next token.

    Works with any tokenizer that has ``decode_bytes(ids) -> bytes`` (both of the lab's do). For text
    without lone surrogates, the pieces joined equal ``tokenizer.decode`` of all the ids.
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, ids) -> str:
        """The text completed by these ids (possibly '' while a character is still unfinished)."""
        return self.decoder.decode(self.tokenizer.decode_bytes(ids))

    def flush(self) -> str:
        """The end of the stream: bytes still waiting cannot become a character and decode to U+FFFD."""
        return self.decoder.decode(b"", final=True)


def generated_text(tokenizer, ids) -> str:
    """Generated ids as printable text, all at once (what a StreamDecoder's pieces add up to)."""
    decoder = StreamDecoder(tokenizer)
    return decoder.feed(ids) + decoder.flush()
