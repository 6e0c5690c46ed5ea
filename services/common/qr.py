"""QR codes of TOTP provisioning URIs, for a terminal (text) and for a web page (inline SVG)."""

from __future__ import annotations

import io

import qrcode
import qrcode.image.svg


def qr_text(uri: str) -> str:
    """`uri` as a QR code drawn with block characters, for a terminal."""
    code = qrcode.QRCode(border=1)
    code.add_data(uri)
    out = io.StringIO()
    code.print_ascii(out=out, invert=True)
    return out.getvalue()


def qr_svg(uri: str) -> str:
    """`uri` as an inline <svg> element (no XML declaration): a page shows it without an image request."""
    image = qrcode.make(uri, image_factory=qrcode.image.svg.SvgPathImage, border=2, box_size=8)
    svg: str = image.to_string(encoding="unicode")
    return svg[svg.index("<svg"):]
