/*
 * md5.js — MD5 (RFC 1321) of a JavaScript string, as lowercase hex.
 *
 * The h5stream API takes passwords as the MD5 hex of the typed password
 * (Login, UpdateUser), so the browser needs MD5. Web Crypto has no MD5, hence
 * this small implementation. The string is hashed as UTF-8 bytes, which is
 * what Python's hashlib.md5(s.encode()) does.
 *
 *   h5sMd5('12345') === '827ccb0eea8a706c4c34a16891f84e7b'
 */
(function (global) {
  'use strict';

  // Per-round left-rotate amounts (RFC 1321 §3.4).
  var S = [7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21];

  // K[i] = floor(abs(sin(i + 1)) * 2^32), computed once instead of a table.
  var K = new Array(64);
  for (var i = 0; i < 64; i++) {
    K[i] = Math.floor(Math.abs(Math.sin(i + 1)) * 4294967296) >>> 0;
  }

  function utf8Bytes(str) {
    if (typeof TextEncoder !== 'undefined') return new TextEncoder().encode(str);
    // Fallback for very old engines: percent-encode then read the bytes back.
    var s = unescape(encodeURIComponent(str));
    var out = new Uint8Array(s.length);
    for (var j = 0; j < s.length; j++) out[j] = s.charCodeAt(j);
    return out;
  }

  function md5Bytes(bytes) {
    var len = bytes.length;
    // Pad: 0x80, zeros up to 56 mod 64, then the bit length as 64-bit LE.
    var padded = new Uint8Array(((len + 8) >>> 6) * 64 + 64);
    padded.set(bytes);
    padded[len] = 0x80;
    var bitLenLo = (len << 3) >>> 0;
    var bitLenHi = Math.floor(len / 0x20000000) >>> 0; // len * 8 / 2^32
    var p = padded.length - 8;
    for (var b = 0; b < 4; b++) {
      padded[p + b] = (bitLenLo >>> (8 * b)) & 0xff;
      padded[p + 4 + b] = (bitLenHi >>> (8 * b)) & 0xff;
    }

    var a0 = 0x67452301, b0 = 0xefcdab89, c0 = 0x98badcfe, d0 = 0x10325476;
    var M = new Array(16);
    for (var off = 0; off < padded.length; off += 64) {
      for (var w = 0; w < 16; w++) {
        var q = off + w * 4;
        M[w] = padded[q] | (padded[q + 1] << 8) | (padded[q + 2] << 16) | (padded[q + 3] << 24);
      }
      var A = a0, B = b0, C = c0, D = d0;
      for (var r = 0; r < 64; r++) {
        var F, g;
        if (r < 16) { F = (B & C) | (~B & D); g = r; }
        else if (r < 32) { F = (D & B) | (~D & C); g = (5 * r + 1) & 15; }
        else if (r < 48) { F = B ^ C ^ D; g = (3 * r + 5) & 15; }
        else { F = C ^ (B | ~D); g = (7 * r) & 15; }
        var tmp = D;
        D = C;
        C = B;
        var x = (A + F + K[r] + M[g]) | 0;
        var s = S[(r >>> 4) * 4 + (r & 3)];
        B = (B + ((x << s) | (x >>> (32 - s)))) | 0;
        A = tmp;
      }
      a0 = (a0 + A) | 0; b0 = (b0 + B) | 0; c0 = (c0 + C) | 0; d0 = (d0 + D) | 0;
    }

    // Digest is the four words little-endian.
    var hex = '';
    [a0, b0, c0, d0].forEach(function (v) {
      for (var k = 0; k < 4; k++) {
        var byte = (v >>> (8 * k)) & 0xff;
        hex += (byte < 16 ? '0' : '') + byte.toString(16);
      }
    });
    return hex;
  }

  function h5sMd5(str) {
    return md5Bytes(utf8Bytes(String(str)));
  }

  global.h5sMd5 = h5sMd5;
  if (typeof module !== 'undefined' && module.exports) module.exports = { h5sMd5: h5sMd5 };
})(typeof window !== 'undefined' ? window : globalThis);
