/*
 * player.js — one big player for ?token=T, with a protocol picker and live
 * stats (latency = buffered end − currentTime, reconnects, bytes, ...).
 */
(function () {
  'use strict';
  if (!H5SS.requireSession()) return;

  var token = H5SS.param('token');
  var video = document.getElementById('h5sVideo');
  var banner = document.getElementById('banner');
  var protocolSel = document.getElementById('protocol');
  var profileSel = document.getElementById('profile');
  var player = null;

  // Protocol picker → player class. A class that is not loaded leaves its
  // option disabled; adding H5sPlayerRTC / H5sPlayerHls to h5splayer.js is
  // all it takes to offer them here.
  var PLAYERS = {
    ws: function () { return window.H5sPlayerWS; },
    rtc: function () { return window.H5sPlayerRTC; },
    hls: function () { return window.H5sPlayerHls; }
  };

  function showBanner(msg) {
    banner.textContent = msg || '';
    banner.hidden = !msg;
  }

  document.getElementById('logout').addEventListener('click', H5SS.logout);
  H5SS.startKeepalive();

  if (!token) {
    showBanner('No stream token given (player.html?token=...).');
    return;
  }

  document.getElementById('src-token').textContent = token;
  document.title = 'h5ss — ' + token;
  document.getElementById('snapshot').href = 'api/v1/GetImage?token=' + encodeURIComponent(token) +
    '&session=' + encodeURIComponent(H5SS.session());

  // Snapshot: a JPEG of the live stream saved into the media store (Operators and up).
  var savedNote = document.getElementById('snapshot-saved');
  document.getElementById('save-snapshot').addEventListener('click', function () {
    savedNote.textContent = 'saving…';
    H5SS.api('Snapshot', { token: token }).then(function (r) {
      savedNote.textContent = 'saved ' + r.strPath;
      savedNote.dataset.path = r.strPath;
    }).catch(function (e) {
      savedNote.textContent = 'snapshot failed: ' + e.message;
    });
  });

  Array.prototype.forEach.call(protocolSel.options, function (opt) {
    opt.disabled = typeof PLAYERS[opt.value]() !== 'function';
  });
  // Remember the last choices across visits.
  var savedProto = null;
  try { savedProto = localStorage.getItem('h5ss.protocol'); } catch (e) { /* storage disabled */ }
  if (savedProto && PLAYERS[savedProto] && typeof PLAYERS[savedProto]() === 'function') protocolSel.value = savedProto;
  var profile = H5SS.param('profile');
  if (profile) profileSel.value = profile;

  function start() {
    if (player) player.disconnect();
    player = null;
    var Cls = PLAYERS[protocolSel.value]();
    if (typeof Cls !== 'function') {
      showBanner('Protocol ' + protocolSel.value + ' is not available in this build.');
      return;
    }
    showBanner('');
    player = new Cls({
      videoid: 'h5sVideo',
      protocol: window.location.protocol,
      host: window.location.host,
      rootpath: H5SS.rootpath(),
      token: token,
      session: H5SS.session(),
      streamprofile: profileSel.value,
      hlsver: H5SS.param('hlsver') || 'v1', // HLS: v1, v2 or ll (LL-HLS)
      consolelog: H5SS.param('debug') === '1' ? 'true' : 'false',
      // Tuning from the address bar, e.g. player.html?token=T&maxlatency=1
      maxlatency: H5SS.param('maxlatency') || undefined
    });
    window.h5ssPlayer = player; // handy from the console and for browser tests
    player.connect();
  }

  protocolSel.addEventListener('change', function () {
    try { localStorage.setItem('h5ss.protocol', protocolSel.value); } catch (e) { /* storage disabled */ }
    start();
  });
  profileSel.addEventListener('change', start);
  document.getElementById('reconnect').addEventListener('click', start);

  var muteBtn = document.getElementById('mute');
  muteBtn.addEventListener('click', function () {
    // Unmuting is a user gesture, so the browser lets sound play.
    video.muted = !video.muted;
    if (!video.muted) video.play().catch(function () {});
  });
  video.addEventListener('volumechange', function () {
    muteBtn.textContent = video.muted ? 'Unmute' : 'Mute';
  });

  document.getElementById('fullscreen').addEventListener('click', function () {
    if (document.fullscreenElement) document.exitFullscreen();
    else if (video.requestFullscreen) video.requestFullscreen().catch(function () {});
  });

  // Source name and online dot; the token alone is shown if this fails.
  function loadSource() {
    H5SS.api('GetSrc', { token: token }).then(function (r) {
      var src = (r.src || []).filter(function (s) { return s.strToken === token; })[0];
      if (!src) {
        showBanner('Unknown source: ' + token);
        return;
      }
      document.getElementById('src-name').textContent = src.strName || token;
      H5ssPtz.attach(token, src);
      document.title = 'h5ss — ' + (src.strName || token);
      var dot = document.getElementById('src-dot');
      dot.classList.toggle('online', !!src.bOnline);
      dot.title = src.bOnline ? 'online' : 'offline';
      // GetSrc's strVideoCodec (H.264 / H.265, once the stream has run); what this
      // browser gets is under Codecs (the MIME string of the stream it plays).
      set('st-codec', src.strVideoCodec || '–');
    }).catch(function (e) {
      showBanner('Cannot read the source: ' + e.message);
    });
  }
  loadSource();
  setInterval(loadSource, 15000);

  function set(id, text) { document.getElementById(id).textContent = text; }

  function refreshStats() {
    if (!player || typeof player.stats !== 'function') return;
    var s = player.stats();
    set('st-state', s.state);
    set('st-latency', s.latency === null || s.latency === undefined ? '–' : s.latency.toFixed(2) + ' s');
    set('st-reconnects', String(s.reconnects));
    set('st-bytes', H5SS.fmtBytes(s.bytesReceived || 0));
    set('st-fragments', String(s.fragments || 0));
    set('st-mime', s.mime || '–');
    set('st-error', s.lastError || '–');
    set('st-res', video.videoWidth ? video.videoWidth + '×' + video.videoHeight : '–');
    document.getElementById('st-state').className = 'state-' + s.state;
    checkSession(s.lastError);
  }

  // The stream socket closed with a session error (server restarted, session
  // expired): ask the REST API, which sends us to login if it agrees.
  var lastSessionCheck = 0;
  function checkSession(err) {
    if (!/session/i.test(err || '') || Date.now() - lastSessionCheck < 5000) return;
    lastSessionCheck = Date.now();
    H5SS.api('Keepalive').catch(function () {});
  }
  setInterval(refreshStats, 250);

  window.addEventListener('pagehide', function () { if (player) player.disconnect(); });
  window.addEventListener('pageshow', function (ev) { if (ev.persisted && player) player.connect(); });

  start();
})();
