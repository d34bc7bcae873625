/*
 * index.js — the source grid: one muted live tile per source (GetSrc), the
 * add/delete source form for Administrators, keepalive and logout.
 */
(function () {
  'use strict';
  if (!H5SS.requireSession()) return;

  var grid = document.getElementById('grid');
  var banner = document.getElementById('banner');
  var tpl = document.getElementById('tile-tpl');
  var tiles = {};          // token -> { el, player, src, visible }
  var admin = H5SS.isAdmin();

  document.getElementById('whoami').textContent = H5SS.user();
  document.getElementById('logout').addEventListener('click', H5SS.logout);
  H5SS.startKeepalive();

  function showBanner(msg) {
    banner.textContent = msg || '';
    banner.hidden = !msg;
  }

  /* Tiles. Players run only while a tile is on screen, so a long list does
     not pull every camera at once. */

  var observer = 'IntersectionObserver' in window ? new IntersectionObserver(function (entries) {
    entries.forEach(function (e) {
      var t = tiles[e.target.dataset.token];
      if (t) setVisible(t, e.isIntersecting);
    });
  }, { rootMargin: '100px' }) : null;

  function setVisible(t, visible) {
    t.visible = visible;
    if (visible && !t.player) {
      t.player = new H5sPlayerWS({
        videodom: t.video,
        protocol: window.location.protocol,
        host: window.location.host,
        rootpath: H5SS.rootpath(),
        token: t.src.strToken,
        session: H5SS.session(),
        streamprofile: 'sub',   // the source's sub stream (its main one when it has none)
        consolelog: 'false'
      });
      t.player.connect();
    } else if (!visible && t.player) {
      t.player.disconnect();
      t.player = null;
    }
  }

  function makeTile(src) {
    var el = tpl.content.firstElementChild.cloneNode(true);
    el.dataset.token = src.strToken;
    var t = { el: el, src: src, player: null, visible: false, video: el.querySelector('video') };
    el.querySelector('.tile-video').href = 'player.html?token=' + encodeURIComponent(src.strToken);
    var del = el.querySelector('.tile-del');
    del.hidden = !admin;
    del.addEventListener('click', function () { deleteSource(t.src); });
    tiles[src.strToken] = t;
    updateTile(t, src);
    grid.appendChild(el);
    if (observer) observer.observe(el);
    else setVisible(t, true);
    return t;
  }

  function updateTile(t, src) {
    t.src = src;
    t.el.querySelector('.tile-name').textContent = src.strName || src.strToken;
    t.el.querySelector('.tile-token').textContent = src.strToken;
    var dot = t.el.querySelector('.dot');
    dot.classList.toggle('online', !!src.bOnline);
    dot.title = src.bOnline ? 'online' : 'offline';
  }

  function removeTile(token) {
    var t = tiles[token];
    if (!t) return;
    if (t.player) t.player.disconnect();
    if (observer) observer.unobserve(t.el);
    t.el.remove();
    delete tiles[token];
  }

  // Player state on each tile, once a second.
  var lastSessionCheck = 0;
  function refreshStates() {
    var sessionError = false;
    Object.keys(tiles).forEach(function (k) {
      var t = tiles[k];
      var badge = t.el.querySelector('.tile-state');
      if (!t.player) { badge.textContent = ''; badge.className = 'tile-state'; return; }
      var s = t.player.stats();
      var text = s.state;
      if (s.state === 'playing' && s.latency !== null) text = 'live ' + s.latency.toFixed(2) + ' s';
      else if (s.state === 'reconnecting' && s.lastError) text = s.lastError;
      badge.textContent = text;
      badge.className = 'tile-state state-' + s.state;
      badge.title = s.lastError ? 'last error: ' + s.lastError : '';
      if (/session/i.test(s.lastError)) sessionError = true;
    });
    // A stream closed for a session reason: let the REST API confirm it and
    // send us to login, rather than retrying with a dead session.
    if (sessionError && Date.now() - lastSessionCheck > 5000) {
      lastSessionCheck = Date.now();
      H5SS.api('Keepalive').catch(function () {});
    }
  }
  setInterval(refreshStates, 1000);

  /* Sources */

  function loadSources() {
    return H5SS.api('GetSrc').then(function (r) {
      showBanner('');
      var list = Array.isArray(r.src) ? r.src : [];
      var seen = {};
      list.forEach(function (src) {
        if (!src || !src.strToken) return;
        seen[src.strToken] = true;
        if (tiles[src.strToken]) updateTile(tiles[src.strToken], src);
        else makeTile(src);
      });
      Object.keys(tiles).forEach(function (k) { if (!seen[k]) removeTile(k); });
      document.getElementById('empty').hidden = list.length > 0;
    }).catch(function (e) {
      showBanner('Cannot list sources: ' + e.message);
    });
  }
  loadSources();
  // Online dots change as cameras come and go; the list may change elsewhere.
  setInterval(loadSources, 15000);

  /* Administration: add / delete. The server checks the role in any case;
     the form is hidden only when we know the user is not an Administrator. */

  var addForm = document.getElementById('add-form');
  var addType = document.getElementById('add-type');
  var addMsg = document.getElementById('add-msg');
  document.getElementById('admin').hidden = !admin;

  function syncType() {
    var rtsp = addType.value === 'rtsp';
    addForm.querySelectorAll('.rtsp-only').forEach(function (n) { n.hidden = !rtsp; });
    document.getElementById('add-url').placeholder = rtsp
      ? 'rtsp://192.168.1.10:554/Streaming/Channels/101'
      : 'h5ss-sample.mp4 (a file in the media directory)';
  }
  addType.addEventListener('change', syncType);
  syncType();

  function setAddMsg(text, isError) {
    addMsg.textContent = text;
    addMsg.className = isError ? 'error' : 'muted';
  }

  addForm.addEventListener('submit', function (ev) {
    ev.preventDefault();
    var v = function (id) { return document.getElementById(id).value.trim(); };
    var token = v('add-token');
    var params = { name: v('add-name') || token, token: token, url: v('add-url') };
    var call = 'AddSrcFile';
    if (addType.value === 'rtsp') {
      call = 'AddSrcRTSP';
      // Credentials travel separately, not inside the URL (PROTOCOLS.md §1).
      params.user = v('add-user');
      params.password = document.getElementById('add-password').value;
    }
    setAddMsg('Adding…', false);
    H5SS.api(call, params).then(function (r) {
      setAddMsg(r.strCode || 'Added', false);
      addForm.reset();
      syncType();
      return loadSources();
    }).catch(function (e) {
      setAddMsg(e.message, true);
    });
  });

  function deleteSource(src) {
    if (!window.confirm('Delete source "' + (src.strName || src.strToken) + '" (' + src.strToken + ')?')) return;
    H5SS.api('DelSrc', { token: src.strToken }).then(function () {
      removeTile(src.strToken);
      showBanner('');
    }).catch(function (e) {
      showBanner('Cannot delete ' + src.strToken + ': ' + e.message);
    });
  }

  // Let the server stop the streams promptly when the page goes away.
  window.addEventListener('pagehide', function () {
    Object.keys(tiles).forEach(function (k) { if (tiles[k].player) tiles[k].player.disconnect(); });
  });
  // Back/forward cache brought the page back: resume the visible tiles.
  window.addEventListener('pageshow', function (ev) {
    if (!ev.persisted) return;
    Object.keys(tiles).forEach(function (k) { if (tiles[k].player) tiles[k].player.connect(); });
  });
})();
