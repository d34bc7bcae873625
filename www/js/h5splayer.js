/*
 * h5splayer.js — h5s player library for h5ss.
 *
 * API-compatible with the public h5stream player (h5splayer r12): the same
 * constructor conf, the same class names, connect()/disconnect() and the
 * playback commands. Written from scratch for h5ss; see PROTOCOLS.md §2.
 *
 *   var player = H5sPlayerCreate({
 *     videoid: 'video1',            // or videodom: <video> element
 *     protocol: location.protocol,  // 'http:' | 'https:' (ws: / wss:)
 *     host: location.host,          // 'host:port'
 *     rootpath: '/',                // path the gateway is mounted on
 *     token: 'token1',              // stream token
 *     session: '...',               // from /api/v1/Login
 *     streamprofile: 'main',        // main | sub: the stream (profile=); grids use sub
 *     hlsver: 'v1',                 // used by H5sPlayerHls
 *     consolelog: 'false',          // 'true' to log to the console
 *     pbconf: {...}                 // optional: playback instead of live
 *   });
 *   player.connect();  ...  player.disconnect();
 *
 * Layout: H5sPlayerBase holds what every transport shares (conf parsing, URL
 * building, the control WebSocket, keepalive, reconnect with backoff, poster,
 * stats). H5sPlayerWS adds MSE playback of the fMP4 WebSocket. H5sPlayerRTC
 * and H5sPlayerHls are meant to be added beside it as further subclasses and
 * registered in the exports at the bottom; H5sPlayerCreate already prefers
 * H5sPlayerRTC on iOS once it exists.
 *
 * h5ss extensions (optional conf fields, all in seconds unless noted):
 *   maxlatency   (0.5)  jump to the live edge when buffered end − currentTime exceeds it
 *   targetlatency (0.1) below maxlatency, play 8 % fast until the lag is down to this
 *   keepbehind   (10)   buffer kept behind currentTime; older data is removed
 *   stalltimeout (15)   reconnect when the buffer has not grown for this long
 *   reconnectmin (1), reconnectmax (10)   reconnect backoff bounds
 *   hevc         (auto) 'true'/'false' overrides the H.265 capability probe
 *   callback     function(eventText, userdata) for live text events too
 */
(function (global) {
  'use strict';

  var H5S_VERSION = 'h5ss-h5splayer 1.0 (h5splayer r12 API)';

  // conf values come as strings ('true'/'false') in h5stream pages, or as
  // real booleans from newer code: accept both.
  function confBool(v, dflt) {
    if (v === undefined || v === null || v === '') return dflt;
    if (typeof v === 'string') return v.toLowerCase() === 'true';
    return !!v;
  }

  function confNum(v, dflt) {
    var n = parseFloat(v);
    return isFinite(n) && n >= 0 ? n : dflt;
  }

  function query(params) {
    var parts = [];
    Object.keys(params).forEach(function (k) {
      if (params[k] === undefined || params[k] === null) return;
      parts.push(encodeURIComponent(k) + '=' + encodeURIComponent(params[k]));
    });
    return parts.length ? '?' + parts.join('&') : '';
  }

  /* ------------------------------------------------------------------ */
  /* H5sPlayerBase: shared by every transport                            */
  /* ------------------------------------------------------------------ */

  class H5sPlayerBase {
    constructor(conf, tag) {
      conf = conf || {};
      var loc = global.location || {};
      var rootpath = conf.rootpath || '/';
      if (rootpath.charAt(rootpath.length - 1) !== '/') rootpath += '/';

      this._tag = tag || 'H5S';
      // Keep the caller's object (h5stream code reads player._conf) but fill
      // in the defaults the rest of the class relies on.
      this._conf = conf;
      this._conf.protocol = conf.protocol || loc.protocol || 'http:';
      this._conf.host = conf.host || loc.host;
      this._conf.rootpath = rootpath;
      this._conf.streamprofile = conf.streamprofile || 'main';
      this._conf.session = conf.session || '';
      this._conf.hlsver = conf.hlsver || 'v1';

      this._debug = confBool(conf.consolelog, false);
      this._token = conf.token;
      this._pbconf = conf.pbconf;

      if (conf.videoid !== undefined && conf.videoid !== null && conf.videoid !== '') {
        this._videoId = conf.videoid;
        this._videodom = document.getElementById(conf.videoid);
      } else {
        this._videodom = conf.videodom;
      }
      if (!this._videodom) throw new Error('h5splayer: no video element (videoid/videodom)');
      this.video = this._videodom;

      this._reconnectMin = confNum(conf.reconnectmin, 1) * 1000;
      this._reconnectMax = confNum(conf.reconnectmax, 10) * 1000;

      this._ws = null;            // current control/data socket
      this._keepaliveTimer = null;
      this._reconnectTimer = null;
      this._retryDelay = this._reconnectMin;
      this._stopped = true;       // true until connect(), and after disconnect()
      this._state = 'idle';
      this._lastError = '';
      this._reconnects = 0;

      // Playback pages may ask for no poster; live pages show the snapshot.
      this._showPoster = !(this._pbconf && confBool(this._pbconf.showposter, true) === false);
      this._posterUri = this.httpUrl('api/v1/GetImage', { token: this._token, session: this._conf.session });
      if (this._showPoster) this.video.setAttribute('poster', this._posterUri);
    }

    _log() {
      if (!this._debug) return;
      var args = Array.prototype.slice.call(arguments);
      args.unshift('[' + this._tag + ' ' + this._token + ']');
      console.log.apply(console, args);
    }

    /* URL building: everything is relative to protocol//host rootpath. */

    httpUrl(path, params) {
      return this._conf.protocol + '//' + this._conf.host + this._conf.rootpath + path + query(params || {});
    }

    wsUrl(path, params) {
      var scheme = this._conf.protocol === 'https:' ? 'wss://' : 'ws://';
      return scheme + this._conf.host + this._conf.rootpath + path + query(params || {});
    }

    /* The socket. Handlers check that the event belongs to the current
       socket, so a late close from an old socket never tears down a new one. */

    _openSocket(url) {
      var ws;
      try {
        ws = new WebSocket(url);
      } catch (e) {
        this._fail('websocket: ' + e.message);
        return null;
      }
      ws.binaryType = 'arraybuffer';
      var self = this;
      ws.onopen = function (ev) { if (self._ws === ws) self._onSocketOpen(ev); };
      ws.onmessage = function (ev) { if (self._ws === ws) self._onSocketMessage(ev); };
      // onerror carries no detail; onclose follows with the code/reason.
      ws.onerror = function () { if (self._ws === ws) self._lastError = 'websocket error'; };
      ws.onclose = function (ev) { if (self._ws === ws) self._onSocketClose(ev); };
      this._ws = ws;
      this._log('open', url);
      return ws;
    }

    _closeSocket() {
      var ws = this._ws;
      this._ws = null;           // detach first: its onclose is now ignored
      if (ws) {
        try { ws.close(); } catch (e) { /* already closed */ }
      }
      this._stopKeepalive();
    }

    send(obj) {
      if (!this._ws || this._ws.readyState !== 1) return false;
      try {
        this._ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj));
        return true;
      } catch (e) {
        this._log('send failed', e);
        return false;
      }
    }

    _startKeepalive(message) {
      this._stopKeepalive();
      var self = this;
      this._keepaliveTimer = setInterval(function () { self.send(message); }, 1000);
    }

    _stopKeepalive() {
      if (this._keepaliveTimer) clearInterval(this._keepaliveTimer);
      this._keepaliveTimer = null;
    }

    _onSocketOpen() { this._state = 'open'; }
    _onSocketMessage() {}

    _onSocketClose(ev) {
      // The server puts the reason in the close frame (e.g. "invalid session",
      // "no such token"): keep it so the page can show it.
      var why = ev && ev.reason ? ev.reason : 'closed (code ' + (ev ? ev.code : '?') + ')';
      this._log('socket closed:', why);
      this._fail(why);
    }

    /* Reconnect: tear down, show a fresh snapshot as poster, retry after
       reconnectmin, doubling up to reconnectmax while attempts keep failing.
       _connected() resets the delay once media really flows. */

    _fail(reason) {
      if (reason) this._lastError = String(reason);
      this._closeSocket();
      this._teardown();
      if (this._stopped) return;
      this._state = 'reconnecting';
      this._scheduleReconnect();
    }

    _scheduleReconnect(delay) {
      if (this._reconnectTimer || this._stopped) return;
      var wait = delay !== undefined ? delay : this._retryDelay;
      this._retryDelay = Math.min(this._reconnectMax, Math.max(this._reconnectMin, wait * 2));
      var self = this;
      this._log('reconnect in', wait, 'ms');
      this._reconnectTimer = setTimeout(function () {
        self._reconnectTimer = null;
        if (self._stopped) return;
        self._reconnects++;
        if (self._showPoster) {
          // Cache-buster so the browser fetches a new snapshot each time.
          self.video.setAttribute('poster', self._posterUri + '&update=' + self._reconnects);
        }
        self._start();
      }, wait);
    }

    _connected() {
      this._retryDelay = this._reconnectMin;
    }

    /* Public API */

    connect() {
      if (!this._stopped) return;
      this._stopped = false;
      this._retryDelay = this._reconnectMin;
      this._start();
    }

    disconnect() {
      this._stopped = true;
      this._pbResume = null;
      if (this._reconnectTimer) clearTimeout(this._reconnectTimer);
      this._reconnectTimer = null;
      this._closeSocket();
      this._teardown();
      this._state = 'stopped';
      this._log('disconnect');
    }

    stats() {
      return {
        state: this._state,
        lastError: this._lastError,
        reconnects: this._reconnects
      };
    }

    /* For subclasses */
    _start() {}
    _teardown() {}
  }

  /* ------------------------------------------------------------------ */
  /* H5sPlayerWS: fMP4 over WebSocket into Media Source Extensions       */
  /* ------------------------------------------------------------------ */

  // Can this browser's MSE take H.265? The server transcodes or refuses when not.
  // hevc=true when MSE can play what the gateway sends for H.265: hvc1 (parameter sets in
  // the init segment), Main profile; a hev1-only answer would not do.
  function mseHevcSupported() {
    var MS = global.MediaSource || global.WebKitMediaSource;
    if (!MS || !MS.isTypeSupported) return false;
    return MS.isTypeSupported('video/mp4; codecs="hvc1.1.6.L120.90"');
  }

  class H5sPlayerWS extends H5sPlayerBase {
    constructor(conf) {
      super(conf, 'WS');
      var c = this._conf;
      this._maxLatency = confNum(c.maxlatency, 0.5);
      this._wantAudio = false;
      var self = this;
      this.video.addEventListener('volumechange', function () {
        if (self._stopped || self._pbconf || self.video.muted || self._wantAudio) return;
        self._wantAudio = true;
        self._closeSocket();
        self._teardown();
        self._start();
      });
      this._targetLatency = confNum(c.targetlatency, 0.1);
      this._keepBehind = confNum(c.keepbehind, 10);
      this._stallTimeout = confNum(c.stalltimeout, 15) * 1000;
      this._hevc = c.hevc !== undefined ? confBool(c.hevc, false) : mseHevcSupported();
      this._live = !this._pbconf;

      this._mediaSource = null;
      this.sourceBuffer = null;  // public name kept from h5splayer
      this._queue = [];          // ArrayBuffers waiting for the SourceBuffer
      this._trimTo = 0;          // pending remove(0, _trimTo), done before the next append
      this._userPaused = false;  // playback paused by pause(): not a stall
      this._objectUrl = null;
      this._mime = '';
      this._gotMime = false;
      this._checkTimer = null;
      this._lastGrowth = 0;      // time (ms) the buffered end last moved
      this._lastEnd = 0;
      this._limit = this._maxLatency; // jump limit in use, see _check
      this._jumpBack = 0.1;      // a jump lands this far behind the buffered end
      this._settleAt = 0;        // while set: a jump is settling, see _check
      this._settleLag = -1;
      this._limitSince = 0;
      this._floorHits = 0;

      this._bytes = 0;
      this._fragments = 0;
      this._jumps = 0;
      this._lastEvent = '';

      // Playback of recordings (pbconf): the server's timeline starts _pbOrigin s
      // before begintime; a seek empties the buffer and shows _pbSeekTo once it is in.
      this._pbOrigin = 0;
      this._pbDuration = 0;
      this._pbSeekTo = null;
      this._pbEnded = false;
      this._removeAll = false;
      this._pbResume = null;     // position to go back to after a reconnect
    }

    _wsPath() {
      var c = this._conf;
      var p = { token: this._token, hevc: this._hevc ? 'true' : 'false', profile: c.streamprofile };
      if (this._pbconf) {
        var pb = this._pbconf;
        p.playback = 'true';
        p.serverpb = pb.serverpb !== undefined ? String(pb.serverpb) : 'false';
        p.begintime = pb.begintime;
        p.endtime = pb.endtime;
        p.filename = pb.filename !== undefined ? pb.filename : 'fake';
      }
      // Muted (autoplay) live video asks for no audio: the browser then need not buffer
      // audio, which takes ~200 ms off the latency. Unmuting reconnects with audio.
      if (!this._wantAudio && !this._pbconf) p.audio = 'false';
      p.session = c.session;
      return this.wsUrl('api/v1/h5swsapi', p);
    }

    _start() {
      if (!(global.MediaSource || global.WebKitMediaSource)) {
        // Nothing to retry: this browser cannot play MSE at all.
        this._state = 'error';
        this._lastError = 'MediaSource API not available';
        return;
      }
      this._state = 'connecting';
      this._gotMime = false;
      this._mime = '';
      this._pbEnded = false;
      this._pbSeekTo = null;
      this._openSocket(this._wsPath());
    }

    _onSocketOpen() {
      this._state = 'open';
      this._startKeepalive({ cmd: 'H5_KEEPALIVE' });
      this._lastGrowth = Date.now();
      this._lastEnd = 0;
      var self = this;
      if (this._checkTimer) clearInterval(this._checkTimer);
      // 250 ms: fine enough to hold latency near maxlatency, cheap for a grid.
      this._checkTimer = setInterval(function () { self._check(); }, 250);
      if (this._pbconf && confBool(this._pbconf.autoplay, false)) this.start();
    }

    _onSocketMessage(ev) {
      if (typeof ev.data === 'string') {
        this._onEvent(ev.data);
        return;
      }
      var data = ev.data;
      if (!this._gotMime) {
        // First binary frame: the MIME/codecs string for addSourceBuffer.
        this._gotMime = true;
        this._mime = String.fromCharCode.apply(null, new Uint8Array(data)).replace(/\0+$/, '').trim();
        this._log('mime', this._mime);
        this._setupMedia();
        return;
      }
      this._bytes += data.byteLength;
      this._fragments++;
      this._queue.push(data);
      this._pump();
    }

    _onEvent(text) {
      this._lastEvent = text;
      this._log('event', text);
      // h5ss sends {"type":"H5_ERROR","strCode":...} before refusing a stream.
      try {
        var j = JSON.parse(text);
        if (j && j.type === 'H5_ERROR' && j.strCode) this._lastError = String(j.strCode);
        if (j && this._pbconf) this._onPlaybackEvent(j);
      } catch (e) { /* plain text event */ }
      var pb = this._pbconf;
      if (pb && typeof pb.callback === 'function') pb.callback(text, pb.userdata);
      if (typeof this._conf.callback === 'function') this._conf.callback(text, this._conf.userdata);
    }

    // h5ss playback events (api/playback.py): where the timeline starts, a seek's
    // landing, the end of the range.
    _onPlaybackEvent(j) {
      if (j.type === 'H5_PLAYBACK_START') {
        this._pbOrigin = Number(j.nOrigin) || 0;
        this._pbDuration = Number(j.nDuration) || 0;
        // Reconnected after a drop: carry on where the picture was, not at begintime.
        if (this._pbResume !== null) this.seek(this._pbResume);
        this._pbResume = null;
      } else if (j.type === 'H5_SEEK') {
        // What is queued or buffered belongs to the old position: drop it all.
        this._queue = [];
        this._trimTo = 0;
        this._removeAll = true;
        this._pbSeekTo = Number(j.nTime);
        this._pbEnded = false;
        this._lastEnd = 0;
        this._lastGrowth = Date.now();
        this._pump();
      } else if (j.type === 'H5_PLAYBACK_END') {
        this._pbEnded = true;
        this._pump();
      }
    }

    // The server closes after H5_PLAYBACK_END: keep what is buffered playing out.
    // A refused playback (4000 bad range, 4004 nothing recorded there) would be
    // refused again: no reconnect.
    _onSocketClose(ev) {
      if (this._pbconf && ev && (ev.code === 4000 || ev.code === 4004)) {
        this._lastError = ev.reason || this._lastError;
        this._closeSocket();
        this._teardown();
        this._state = 'error';
        return;
      }
      if (this._pbconf && !this._pbEnded) {
        var at = this.position();
        if (at !== null && at > 0) this._pbResume = at;
      }
      if (this._pbEnded) {
        this._ws = null;
        this._stopKeepalive();
        this._state = 'ended';
        this._log('playback ended');
        this._pump();
        return;
      }
      super._onSocketClose(ev);
    }

    _setupMedia() {
      var MS = global.MediaSource || global.WebKitMediaSource;
      if (MS.isTypeSupported && !MS.isTypeSupported(this._mime)) {
        // Retrying soon will not help; wait the long delay in case the
        // source comes back with another codec.
        this._lastError = 'unsupported codec: ' + this._mime;
        this._closeSocket();
        this._teardown();
        this._state = 'reconnecting';
        this._scheduleReconnect(this._reconnectMax);
        return;
      }
      var ms = new MS();
      this._mediaSource = ms;
      var self = this;
      ms.addEventListener('sourceopen', function () {
        if (self._mediaSource !== ms) return;
        try {
          var sb = ms.addSourceBuffer(self._mime);
          // 'segments': trust the fragment timestamps (tfdt), so gaps stay
          // gaps and we can skip them, rather than 'sequence' gluing them.
          sb.mode = 'segments';
          sb.addEventListener('updateend', function () {
            if (self.sourceBuffer !== sb) return;
            // The first media in: place playback on it now rather than at the next
            // periodic check (up to 250 ms later), so the first frame shows at once.
            if (!self._lastEnd && sb.buffered.length) self._check();
            self._pump();
          });
          sb.addEventListener('error', function () { if (self.sourceBuffer === sb) self._lastError = 'sourcebuffer error'; });
          self.sourceBuffer = sb;
        } catch (e) {
          self._fail('addSourceBuffer: ' + e.message);
          return;
        }
        self._pump();
      });
      this._objectUrl = URL.createObjectURL(ms);
      var v = this.video;
      // Muted autoplay is what lets Chromium start without a user gesture; once the
      // user has unmuted (a gesture), the reconnect with audio plays with sound.
      v.muted = !this._wantAudio;
      v.autoplay = true;
      v.playsInline = true;
      v.src = this._objectUrl;
      this._play();
    }

    _play() {
      var p = this.video.play();
      if (p && p.catch) p.catch(function () { /* retried from _check */ });
    }

    // Feed the SourceBuffer: one operation at a time; a pending trim first.
    _pump() {
      var sb = this.sourceBuffer;
      if (!sb || sb.updating || !this._mediaSource || this._mediaSource.readyState !== 'open') return;

      if (this._removeAll) {
        this._removeAll = false;
        try {
          if (sb.buffered.length) {
            sb.remove(0, Infinity);
            return; // updateend calls us again
          }
        } catch (e) { this._log('remove failed', e); }
      }

      if (this._trimTo) {
        var to = this._trimTo;
        this._trimTo = 0;
        try {
          if (sb.buffered.length && to > sb.buffered.start(0)) {
            sb.remove(0, to);
            return; // updateend calls us again
          }
        } catch (e) { this._log('trim failed', e); }
      }

      if (!this._queue.length) {
        // The range is over and all of it is in: let the element reach 'ended'.
        if (this._pbEnded && !this._ws) {
          try { this._mediaSource.endOfStream(); } catch (e) { /* already ended */ }
        }
        return;
      }
      // Join everything queued into one append: fewer updateend round trips
      // when a tab was busy, same bytes in the same order.
      var chunk;
      if (this._queue.length === 1) {
        chunk = new Uint8Array(this._queue[0]);
      } else {
        var total = 0, i;
        for (i = 0; i < this._queue.length; i++) total += this._queue[i].byteLength;
        chunk = new Uint8Array(total);
        for (i = 0, total = 0; i < this._queue.length; i++) {
          chunk.set(new Uint8Array(this._queue[i]), total);
          total += this._queue[i].byteLength;
        }
      }
      this._queue = [];
      try {
        sb.appendBuffer(chunk);
      } catch (e) {
        if (e.name === 'QuotaExceededError') {
          // Buffer full: drop old data and try again with this chunk.
          this._queue.unshift(chunk.buffer);
          this._trimTo = Math.max(0, this.video.currentTime - 1);
          this._lastError = 'buffer full, trimming';
          return;
        }
        this._fail('appendBuffer: ' + e.message);
      }
    }

    // Periodic: live-edge chase, gap skip, buffer trim, stall detection.
    _check() {
      var sb = this.sourceBuffer, v = this.video, now = Date.now();
      if (!sb) {
        if (now - this._lastGrowth > this._stallTimeout) this._fail('no media for ' + this._stallTimeout / 1000 + ' s');
        return;
      }
      var ranges;
      try { ranges = sb.buffered; } catch (e) { return; }
      if (!ranges.length) {
        if (now - this._lastGrowth > this._stallTimeout) this._fail('no media for ' + this._stallTimeout / 1000 + ' s');
        return;
      }

      var end = ranges.end(ranges.length - 1);
      if (this._pbSeekTo !== null) {
        // A seek: wait for the new media, then show the asked-for moment (the
        // server started at the keyframe before it, so the decoder can get there).
        for (var k = 0; k < ranges.length; k++) {
          if (this._pbSeekTo >= ranges.start(k) - 0.05 && this._pbSeekTo < ranges.end(k)) {
            this._seek(Math.max(this._pbSeekTo, ranges.start(k)));
            this._pbSeekTo = null;
            break;
          }
        }
        if (this._pbSeekTo !== null) return;
      }
      if (end > this._lastEnd + 0.001) {
        if (this._lastEnd === 0) this._connected();
        this._lastEnd = end;
        this._lastGrowth = now;
        // A playback that ended (its socket closed after H5_PLAYBACK_END) stays 'ended'
        // while its last append lands.
        if (this._state !== 'playing' && this._state !== 'ended') this._state = 'playing';
      } else if (this._userPaused || this._pbEnded) {
        this._lastGrowth = now; // paused or finished playback is not a stall
      } else if (now - this._lastGrowth > this._stallTimeout) {
        this._fail('stalled: buffer not growing for ' + this._stallTimeout / 1000 + ' s');
        return;
      }

      var t = v.currentTime;
      // Gap skip: if playback sits outside every buffered range (start of
      // stream, or a hole after a lost fragment), move to the next range.
      var inside = false, next = -1;
      for (var i = 0; i < ranges.length; i++) {
        if (t >= ranges.start(i) - 0.05 && t < ranges.end(i)) { inside = true; break; }
        if (ranges.start(i) > t && next < 0) next = ranges.start(i);
      }
      if (!inside && next >= 0) {
        this._seek(next + 0.01);
        t = next + 0.01;
      }

      if (this._live) {
        // Live edge: past maxlatency, jump to just behind the end; at most
        // once per 2 s, so a jittery network does not seek-thrash.
        var lag = end - t;
        if (this._settleAt) {
          // After a jump the lag settles on the floor this browser's pipeline
          // keeps (decode and audio output buffers). Lag steady between 1 s
          // and 2 s after the jump, yet above the limit, is such a floor:
          // jumping again cannot beat it, so raise the limit above it. Lag
          // that keeps growing is real drift and is jumped over as usual.
          if (this._settleLag < 0 && now >= this._settleAt - 1000) this._settleLag = lag;
          if (now >= this._settleAt) {
            this._settleAt = 0;
            // Twice in a row, so one passing hiccup is not taken for a floor.
            var floor = lag > this._limit && Math.abs(lag - this._settleLag) < 0.1;
            this._floorHits = floor ? this._floorHits + 1 : 0;
            if (this._floorHits >= 2) {
              this._floorHits = 0;
              this._limit = Math.min(3, lag + 0.25);
              this._limitSince = now;
              this._log('latency floor', lag.toFixed(2), 's; jump limit now', this._limit.toFixed(2));
            }
          }
        }
        // A raised limit may come from a passing hiccup mistaken for a
        // floor: retry the configured one every minute.
        if (this._limit > this._maxLatency && now - this._limitSince > 60000) this._limit = this._maxLatency;
        if (lag > this._limit && !this._settleAt) {
          this._settleAt = now + 2000;
          this._settleLag = -1;
          this._jumps++;
          this._seek(Math.max(ranges.start(ranges.length - 1), end - this._jumpBack));
        }
        // Between jumps, ease the lag down to targetlatency by playing 8 % fast
        // (no seek, nothing skipped); back to real time once there.
        if (!v.paused && !this._pbconf) {
          var fast = v.playbackRate > 1;
          var rate = lag > this._targetLatency + (fast ? 0.02 : 0.08) ? 1.08 : 1;
          if (v.playbackRate !== rate) v.playbackRate = rate;
        }
      }

      // Trim: remove what lies more than keepbehind seconds behind, in steps
      // of a few seconds so remove() is not called every tick.
      if (t - ranges.start(0) > this._keepBehind + 5) this._trimTo = t - this._keepBehind;

      if (v.paused && !v.ended && v.readyState >= 2 && !(this._pbconf && this._userPaused)) this._play();
      if (this._trimTo) this._pump();
    }

    _seek(t) {
      try { this.video.currentTime = t; } catch (e) { this._log('seek failed', e); }
    }

    _teardown() {
      if (this._checkTimer) clearInterval(this._checkTimer);
      this._checkTimer = null;
      this._queue = [];
      this._trimTo = 0;
      this._gotMime = false;
      var ms = this._mediaSource;
      this._mediaSource = null;
      this.sourceBuffer = null;
      if (ms && ms.readyState === 'open') {
        try { ms.endOfStream(); } catch (e) { /* fine: detaching anyway */ }
      }
      if (this._objectUrl) {
        URL.revokeObjectURL(this._objectUrl);
        this._objectUrl = null;
        // Detach so the element frees its decoder and shows the poster.
        this.video.removeAttribute('src');
        try { this.video.load(); } catch (e) { /* ignore */ }
      }
      this._lastEnd = 0;
      this._lastGrowth = Date.now();
      this._limit = this._maxLatency;
      this._settleAt = 0;
      this._floorHits = 0;
    }

    /* Playback commands (h5splayer API); meaningful with pbconf. The server paces
       the media; the element follows (pauses, plays at the same rate). */
    start() { this._userPaused = false; this.send({ cmd: 'H5_START' }); }
    pause() {
      this._userPaused = true;
      this.send({ cmd: 'H5_PAUSE' });
      if (this._pbconf) this.video.pause();
    }
    resume() {
      this._userPaused = false;
      this.send({ cmd: 'H5_RESUME' });
      if (this._pbconf) this._play();
    }
    // nTime: seconds from pbconf.begintime.
    seek(nTime) { this.send({ cmd: 'H5_SEEK', nSeekTime: nTime }); }
    speed(nSpeed) {
      this.send({ cmd: 'H5_SPEED', nSpeed: nSpeed });
      if (this._pbconf) this.video.playbackRate = Number(nSpeed) || 1;
    }

    // Playback: seconds from pbconf.begintime now on screen (null before media).
    position() {
      if (!this.sourceBuffer) return null;
      return this.video.currentTime - this._pbOrigin;
    }

    // Seconds between the newest buffered media and what is on screen.
    latency() {
      var sb = this.sourceBuffer;
      try {
        if (!sb || !sb.buffered.length) return null;
        return Math.max(0, sb.buffered.end(sb.buffered.length - 1) - this.video.currentTime);
      } catch (e) { return null; }
    }

    stats() {
      var s = super.stats();
      var buffered = 0;
      try {
        var r = this.sourceBuffer && this.sourceBuffer.buffered;
        if (r && r.length) buffered = r.end(r.length - 1) - r.start(0);
      } catch (e) { /* source buffer gone */ }
      s.bytesReceived = this._bytes;
      s.fragments = this._fragments;
      s.mime = this._mime;
      s.latency = this.latency();
      s.buffered = buffered;
      s.jumps = this._jumps;
      s.latencyLimit = this._limit;
      s.queued = this._queue.length;
      s.lastEvent = this._lastEvent;
      s.currentTime = this.video.currentTime;
      if (this._pbconf) {
        s.position = this.position();
        s.duration = this._pbDuration;
        s.ended = this._pbEnded;
      }
      return s;
    }
  }

  /* ------------------------------------------------------------------ */
  /* H5sPlayerRTC: WebRTC with the h5s server-offer signalling           */
  /* ------------------------------------------------------------------ */

  // open → (iceserver) → offer → our answer → candidates both ways as
  // "remoteice"; keepalive every second. The camera's H.264 and G.711 arrive
  // as they are (no transcoding), so this is the lowest-latency path.
  class H5sPlayerRTC extends H5sPlayerBase {
    constructor(conf) {
      super(conf, 'RTC');
      this._pc = null;
      this._iceConfig = {};
    }

    _start() {
      this._state = 'connecting';
      var path = this._conf.rtcengine === 'v2' ? 'api/v1/h5srtcapi2' : 'api/v1/h5srtcapi';
      this._openSocket(this.wsUrl(path, {
        token: this._token, profile: this._conf.streamprofile, session: this._conf.session
      }));
    }

    _onSocketOpen() {
      this._state = 'open';
      this.send({ type: 'open' });
      this._startKeepalive({ type: 'keepalive' });
    }

    _onSocketMessage(ev) {
      if (typeof ev.data !== 'string') return;
      var msg;
      try { msg = JSON.parse(ev.data); } catch (e) { msg = null; }
      if (msg && msg.type === 'iceserver') {
        this._iceConfig = { iceServers: msg.iceServers || [], iceTransportPolicy: msg.iceTransportPolicy || 'all' };
      } else if (msg && msg.type === 'offer') {
        this._answer(msg).catch(function (e) { this._fail('webrtc: ' + e.message); }.bind(this));
      } else if (msg && msg.type === 'remoteice') {
        if (this._pc) this._pc.addIceCandidate(msg).catch(function () { /* stale candidate */ });
      } else {
        if (msg && msg.strCode) this._lastError = msg.strCode;
        var cb = this._conf.callback || (this._pbconf && this._pbconf.callback);
        if (typeof cb === 'function') cb(ev.data, this._pbconf && this._pbconf.userdata);
      }
    }

    async _answer(offer) {
      var self = this;
      var pc = new RTCPeerConnection(this._iceConfig);
      this._pc = pc;
      pc.ontrack = function (ev) {
        if (!self.video.srcObject) self.video.srcObject = new MediaStream();
        self.video.srcObject.addTrack(ev.track);
        self.video.play().catch(function () { /* autoplay policy: stays muted */ });
      };
      pc.onicecandidate = function (ev) {
        if (!ev.candidate) return;
        var c = ev.candidate.toJSON();
        c.type = 'remoteice';
        self.send(c);
      };
      pc.onconnectionstatechange = function () {
        if (self._pc !== pc) return;
        if (pc.connectionState === 'connected') { self._state = 'playing'; self._connected(); }
        if (pc.connectionState === 'failed') self._fail('webrtc connection failed');
      };
      await pc.setRemoteDescription({ type: 'offer', sdp: offer.sdp });
      await pc.setLocalDescription(await pc.createAnswer());
      this.send({ type: 'answer', sdp: pc.localDescription.sdp });
    }

    _teardown() {
      if (this._pc) { this._pc.close(); this._pc = null; }
      if (this.video.srcObject) this.video.srcObject = null;
    }

    stats() {
      var s = super.stats();
      s.connectionState = this._pc ? this._pc.connectionState : 'none';
      return s;
    }
  }

  /* ------------------------------------------------------------------ */
  /* H5sPlayerHls: HLS v1/v2 (h5s paths) and LL-HLS                      */
  /* ------------------------------------------------------------------ */

  // conf.hlsver: 'v1' (MPEG-TS), 'v2' (fMP4) or 'll' (LL-HLS, /{token}/index.m3u8).
  // conf.nativehls: 'auto' (default) | 'true' | 'false'. With MSE this class
  // fetches the fMP4 init, parts or segments itself (blocking playlist reload,
  // so each arrives as soon as it exists, from the newest one on) and appends
  // them through the WS player's buffer handling (live-edge chase, trim,
  // stalls). The browser's own HLS plays where there is no MSE (iPhone) or
  // when asked: it starts three target durations behind live, as the HLS spec
  // tells players to, so it is seconds later (bench/hls_latency.py).
  // MSE cannot take MPEG-TS everywhere, so v1 plays the v2 rendition there:
  // the same segments, cut once on the server.
  // h5s's keepalive socket (api/v1/h5swscmnapi) stays open while playing.

  function nativeHls(video) {
    return !!(video.canPlayType && video.canPlayType('application/vnd.apple.mpegurl'));
  }

  function hlsAttrs(text) {
    var out = {}, re = /([A-Z0-9-]+)=("[^"]*"|[^,]*)/g, m;
    while ((m = re.exec(text)) !== null) out[m[1]] = m[2].replace(/^"|"$/g, '');
    return out;
  }

  // A media or master playlist: {segments: [{msn, uri (null while open),
  // duration, map, parts: [{uri, duration, independent}]}], variants, ...}.
  function parsePlaylist(text, base) {
    var pl = { segments: [], variants: [], targetDuration: 0, partTarget: 0 };
    var msn = 0, map = null, cur = null, inf = 0, streamInf = null;
    function abs(uri) { return new URL(uri, base).href; }
    function current() {
      if (!cur) cur = { msn: msn, uri: null, duration: 0, map: map, parts: [] };
      return cur;
    }
    text.split('\n').forEach(function (raw) {
      var line = raw.trim(), at = line.indexOf(':'), tag = at > 0 ? line.slice(0, at) : line, val = line.slice(at + 1);
      if (!line) return;
      if (tag === '#EXT-X-MEDIA-SEQUENCE') msn = parseInt(val, 10);
      else if (tag === '#EXT-X-TARGETDURATION') pl.targetDuration = parseFloat(val);
      else if (tag === '#EXT-X-PART-INF') pl.partTarget = parseFloat(hlsAttrs(val)['PART-TARGET']);
      else if (tag === '#EXT-X-MAP') map = abs(hlsAttrs(val).URI);
      else if (tag === '#EXT-X-PART') {
        var a = hlsAttrs(val);
        current().parts.push({ uri: abs(a.URI), duration: parseFloat(a.DURATION), independent: a.INDEPENDENT === 'YES' });
      } else if (tag === '#EXTINF') inf = parseFloat(val);
      else if (tag === '#EXT-X-STREAM-INF') streamInf = hlsAttrs(val);
      else if (line.charAt(0) !== '#') {
        if (streamInf) {
          pl.variants.push({ uri: abs(line), codecs: streamInf.CODECS || '' });
          streamInf = null;
          return;
        }
        var seg = current();
        seg.uri = abs(line);
        seg.duration = inf;
        pl.segments.push(seg);
        cur = null;
        msn++;
      }
    });
    if (cur) pl.segments.push(cur); // the open segment: parts so far
    return pl;
  }

  // The MSE type from an fMP4 init segment: avc1.PPCCLL from avcC, AAC's
  // object type from the esds DecoderSpecificInfo.
  function mimeFromInit(u8) {
    function find(name) {
      for (var i = 0; i + 4 <= u8.length; i++) {
        if (u8[i] === name.charCodeAt(0) && u8[i + 1] === name.charCodeAt(1) &&
            u8[i + 2] === name.charCodeAt(2) && u8[i + 3] === name.charCodeAt(3)) return i;
      }
      return -1;
    }
    function hex(b) { return (b < 16 ? '0' : '') + b.toString(16).toUpperCase(); }
    var codecs = [], at = find('avcC');
    if (at >= 0) codecs.push('avc1.' + hex(u8[at + 5]) + hex(u8[at + 6]) + hex(u8[at + 7]));
    // esds: ES_Descriptor > DecoderConfigDescriptor (13 bytes) > DecoderSpecificInfo.
    function descriptor(p) { // skips tag and size bytes: where the payload starts
      p++;
      while (u8[p++] & 0x80) { /* size continues */ }
      return p;
    }
    at = find('esds');
    if (at >= 0) {
      var es = descriptor(at + 8), flags = u8[es + 2], p = es + 3;
      if (flags & 0x80) p += 2;
      if (flags & 0x40) p += 1 + u8[p];
      if (flags & 0x20) p += 2;
      codecs.push('mp4a.40.' + (u8[descriptor(descriptor(p) + 13)] >> 3));
    }
    return 'video/mp4; codecs="' + codecs.join(', ') + '"';
  }

  class H5sPlayerHls extends H5sPlayerWS {
    constructor(conf) {
      super(conf);
      this._tag = 'HLS';
      var c = this._conf;
      var ver = String(c.hlsver || 'v1').toLowerCase();
      this._ver = ver === 'v2' || ver === 'll' ? ver : 'v1';
      var want = c.nativehls === undefined ? 'auto' : String(c.nativehls).toLowerCase();
      var mse = !!(global.MediaSource || global.WebKitMediaSource);
      this._native = want === 'true' || !mse;
      if (this._native && !nativeHls(this.video)) this._lastError = 'this browser plays HLS neither natively nor with MSE';
      this._autoLatency = c.maxlatency === undefined;
      this._run = 0;          // id of the current fetch loop; a new one abandons the old
      this._abort = null;     // AbortController of the current loop's requests
      this._map = null;       // init segment URI appended last
      this._onError = null;
    }

    playlistUrl() {
      var auth = { session: this._conf.session, profile: this._conf.streamprofile };
      var token = encodeURIComponent(this._token);
      if (this._ver === 'll') return this.httpUrl(token + '/index.m3u8', auth);
      // Without native HLS, v1 plays the fMP4 rendition (see above).
      var ver = this._native ? this._ver : 'v2';
      return this.httpUrl('hls/' + ver + '/' + token + '/hls.m3u8', auth);
    }

    _start() {
      this._state = 'connecting';
      this._openSocket(this.wsUrl('api/v1/h5swscmnapi', {
        token: this._token, profile: this._conf.streamprofile, session: this._conf.session
      }));
      var v = this.video, self = this;
      v.muted = true;
      v.autoplay = true;
      v.playsInline = true;
      if (this._native) {
        this._onError = function () { self._fail('media error ' + (v.error ? v.error.code : '')); };
        v.addEventListener('error', this._onError);
        v.src = this.playlistUrl();
        this._play();
        return;
      }
      var run = ++this._run;
      this._abort = new AbortController();
      this._lastGrowth = Date.now();
      this._checkTimer = setInterval(function () { self._check(); }, 250);
      this._load(run).catch(function (e) {
        if (run === self._run && !self._stopped && e.name !== 'AbortError') self._fail(e.message);
      });
    }

    _onSocketOpen() {
      if (this._state === 'connecting') this._state = 'open';
      this._startKeepalive({ type: 'keepalive' });
      if (this._native) this._connected();
    }

    _onSocketMessage(ev) {
      if (typeof ev.data === 'string') this._onEvent(ev.data);
    }

    async _get(url, binary) {
      var r = await fetch(url, { signal: this._abort.signal, cache: 'no-store' });
      if (!r.ok) {
        var why = 'HTTP ' + r.status;
        try { why = (await r.json()).strCode || why; } catch (e) { /* not JSON */ }
        throw new Error(why);
      }
      return binary ? r.arrayBuffer() : r.text();
    }

    async _playlist(url) {
      return parsePlaylist(await this._get(url, false), url);
    }

    async _append(url, map, run) {
      if (map !== this._map) {
        var init = await this._get(map, true);
        if (run !== this._run) return;
        if (!this._mime) {
          this._mime = mimeFromInit(new Uint8Array(init));
          this._log('mime', this._mime);
          this._setupMedia();
        }
        this._map = map;
        this._queue.push(init);
      }
      var data = await this._get(url, true);
      if (run !== this._run) return;
      this._bytes += data.byteLength;
      this._fragments++;
      this._queue.push(data);
      this._pump();
    }

    // Follow the playlist: in LL mode part by part from the newest
    // independent part; otherwise segment by segment from the newest one.
    async _load(run) {
      var url = this.playlistUrl();
      var pl = await this._playlist(url);
      if (pl.variants.length) {
        url = pl.variants[0].uri;
        pl = await this._playlist(url);
      }
      var ll = this._ver === 'll' && pl.partTarget > 0;
      if (this._autoLatency) {
        // Media comes a part (or a segment) at a time, so the lag saws by that
        // much: ease it down to one chunk and a margin (never less, or playback
        // runs dry before the next one), jump back to two when four piled up.
        var chunk = ll ? pl.partTarget : pl.targetDuration;
        this._targetLatency = chunk + Math.min(0.5, chunk);
        this._jumpBack = 2 * chunk;
        this._maxLatency = this._limit = 4 * chunk + 0.2;
      }
      // Whole segments start one back, so there is a margin before the next.
      var complete = pl.segments.filter(function (s) { return s.uri; });
      var next = ll ? this._livePart(pl) : { msn: complete[Math.max(0, complete.length - 2)].msn, part: 0 };
      var sep = url.indexOf('?') >= 0 ? '&' : '?';
      while (run === this._run) {
        var first = pl.segments.length ? pl.segments[0].msn : next.msn;
        if (next.msn < first) next = ll ? this._livePart(pl) : { msn: pl.segments[pl.segments.length - 1].msn, part: 0 };
        for (var i = 0; i < pl.segments.length && run === this._run; i++) {
          var seg = pl.segments[i];
          if (seg.msn !== next.msn) continue;
          if (ll) {
            for (var p = next.part; p < seg.parts.length && run === this._run; p++) {
              await this._append(seg.parts[p].uri, seg.map, run);
              next.part = p + 1;
            }
          } else if (seg.uri) {
            await this._append(seg.uri, seg.map, run);
          }
          if (!seg.uri) break; // the open segment: wait for more of it
          next = { msn: seg.msn + 1, part: 0 };
        }
        var block = '_HLS_msn=' + next.msn + (ll ? '&_HLS_part=' + next.part : '');
        pl = await this._playlist(url + sep + block);
      }
    }

    // Frames a camera dropped leave holes in the timeline that MSE will not
    // play across: stalled at the end of a buffered range with another one
    // close after it, step over the hole (hls.js does the same).
    _check() {
      var v = this.video, b = v.buffered, t = v.currentTime;
      for (var i = 0; i + 1 < b.length && v.readyState < 3; i++) {
        if (t >= b.start(i) && b.end(i) - t < 0.1 && b.start(i + 1) - b.end(i) < 2) {
          this._log('skipping a hole of', (b.start(i + 1) - b.end(i)).toFixed(3), 's');
          this._seek(b.start(i + 1) + 0.01);
          break;
        }
      }
      super._check();
    }

    // The newest part a decoder can start from.
    _livePart(pl) {
      for (var i = pl.segments.length - 1; i >= 0; i--) {
        var parts = pl.segments[i].parts;
        for (var p = parts.length - 1; p >= 0; p--) {
          if (parts[p].independent) return { msn: pl.segments[i].msn, part: p };
        }
      }
      return { msn: pl.segments[pl.segments.length - 1].msn, part: 0 };
    }

    _teardown() {
      this._run++;
      if (this._abort) this._abort.abort();
      this._abort = null;
      this._map = null;
      this._mime = '';
      if (this._onError) this.video.removeEventListener('error', this._onError);
      this._onError = null;
      if (this._native) {
        this.video.removeAttribute('src');
        try { this.video.load(); } catch (e) { /* ignore */ }
      }
      super._teardown();
    }

    latency() {
      var b = this.video.buffered;
      return b.length ? Math.max(0, b.end(b.length - 1) - this.video.currentTime) : null;
    }

    stats() {
      var s = super.stats();
      s.mode = this._native ? 'native' : 'mse';
      s.hlsver = this._ver;
      s.url = this.playlistUrl();
      return s;
    }
  }

  /* ------------------------------------------------------------------ */
  /* Factory and helpers                                                 */
  /* ------------------------------------------------------------------ */

  function H5siOS() {
    var ua = (global.navigator && navigator.userAgent) || '';
    // iPadOS reports itself as a Mac; touch support gives it away.
    return /iPad|iPhone|iPod/.test(ua) ||
      (/Macintosh/.test(ua) && global.navigator && navigator.maxTouchPoints > 1);
  }

  // iOS has no MSE on iPhone, so h5stream uses WebRTC there; WS elsewhere.
  function H5sPlayerCreate(conf) {
    if (H5siOS() && typeof global.H5sPlayerRTC === 'function') return new global.H5sPlayerRTC(conf);
    return new H5sPlayerWS(conf);
  }

  var api = {
    H5S_VERSION: H5S_VERSION,
    H5sPlayerBase: H5sPlayerBase,
    H5sPlayerWS: H5sPlayerWS,
    H5sPlayerRTC: H5sPlayerRTC,
    H5sPlayerHls: H5sPlayerHls,
    H5sPlayerCreate: H5sPlayerCreate,
    H5siOS: H5siOS
  };
  Object.keys(api).forEach(function (k) { global[k] = api[k]; });
  if (typeof module !== 'undefined' && module.exports) module.exports = api;
})(typeof window !== 'undefined' ? window : globalThis);
