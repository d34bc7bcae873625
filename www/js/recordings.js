/*
 * recordings.js — pick a camera, a day and a time range; list the recordings
 * (Search), play the range over WS playback (h5swsapi?playback=true) with
 * pause, seek and speed, or download it as one MP4 (DownloadRecord).
 *
 * Times are this browser's local time and go to the server with its UTC
 * offset (h5stream's form, 2018-03-07T120101+0800). Deep link:
 * recordings.html?token=T&day=YYYY-MM-DD&from=HH:MM:SS&to=HH:MM:SS[&autoplay=1].
 */
(function () {
  'use strict';
  if (!H5SS.requireSession()) return;

  var $ = function (id) { return document.getElementById(id); };
  var video = $('h5sVideo');
  var player = null;
  var playingFrom = 0;     // epoch ms the seek slider's 0 stands for
  var dragging = false;

  function showBanner(msg) {
    $('banner').textContent = msg || '';
    $('banner').hidden = !msg;
  }

  function pad(n) { return (n < 10 ? '0' : '') + n; }

  // Local day + time → Date; then h5stream's ISO form with the local offset.
  function localDate(day, time) {
    var d = day.split('-').map(Number), t = (time || '00:00:00').split(':').map(Number);
    return new Date(d[0], d[1] - 1, d[2], t[0] || 0, t[1] || 0, t[2] || 0);
  }
  function isoTime(date) {
    var off = -date.getTimezoneOffset(), sign = off < 0 ? '-' : '+';
    off = Math.abs(off);
    return date.getFullYear() + '-' + pad(date.getMonth() + 1) + '-' + pad(date.getDate()) + 'T' +
      pad(date.getHours()) + pad(date.getMinutes()) + pad(date.getSeconds()) +
      sign + pad(Math.floor(off / 60)) + pad(off % 60);
  }
  // Search's strStartTime, e.g. 2018-03-07T120101+0800 → Date.
  function parseH5Time(s) {
    var m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):?(\d{2}):?(\d{2})([+-])(\d{2}):?(\d{2})?$/.exec(s || '');
    if (!m) return null;
    var off = (Number(m[8]) * 60 + Number(m[9] || 0)) * (m[7] === '-' ? -1 : 1);
    return new Date(Date.UTC(+m[1], m[2] - 1, +m[3], +m[4], +m[5], +m[6]) - off * 60000);
  }
  function clockText(date) {
    return pad(date.getHours()) + ':' + pad(date.getMinutes()) + ':' + pad(date.getSeconds());
  }

  function range() {
    var begin = localDate($('day').value, $('from').value), end = localDate($('day').value, $('to').value);
    return { token: $('camera').value, begin: begin, end: end };
  }

  function updateDownload() {
    var r = range();
    $('download').href = 'api/v1/DownloadRecord?' + new URLSearchParams({
      token: r.token, start: isoTime(r.begin), end: isoTime(r.end), session: H5SS.session()
    }).toString();
  }

  function stop() {
    if (player) player.disconnect();
    player = null;
    $('pause').disabled = $('seek').disabled = true;
  }

  // Play [begin, end) of the camera, or one file (filename = strPath from Search).
  function play(begin, end, filename) {
    stop();
    showBanner('');
    if (!(end > begin)) { showBanner('"To" must be after "From".'); return; }
    playingFrom = begin.getTime();
    var pbconf = {
      begintime: isoTime(begin), endtime: isoTime(end), autoplay: 'true', showposter: 'false',
      callback: function (text) {
        try {
          var j = JSON.parse(text);
          if (j.type === 'H5_ERROR') showBanner(j.strCode);
        } catch (e) { /* not JSON */ }
      }
    };
    if (filename) pbconf.filename = filename;
    player = new H5sPlayerWS({
      videoid: 'h5sVideo', protocol: location.protocol, host: location.host,
      rootpath: H5SS.rootpath(), token: $('camera').value, session: H5SS.session(),
      consolelog: H5SS.param('debug') === '1' ? 'true' : 'false', pbconf: pbconf
    });
    window.h5ssPlayer = player; // for the console and browser tests
    $('seek').max = String(Math.round((end - begin) / 1000));
    $('seek').value = '0';
    $('pause').textContent = 'Pause';
    $('pause').disabled = $('seek').disabled = false;
    $('speed').value = '1';
    video.playbackRate = 1;
    player.connect();
  }

  function list() {
    var r = range();
    var tbody = $('files').querySelector('tbody');
    H5SS.api('Search', { type: 'record', token: r.token, start: isoTime(r.begin), end: isoTime(r.end) }).then(function (ans) {
      var rows = ans.record || [];
      tbody.innerHTML = '';
      rows.forEach(function (rec) {
        var tr = document.createElement('tr');
        var start = parseH5Time(rec.strStartTime);
        tr.innerHTML = '<td>' + H5SS.esc(start ? start.toLocaleString() : rec.strStartTime) + '</td>' +
          '<td>' + H5SS.esc(rec.strDuration) + ' s</td>' +
          '<td><button class="btn small" type="button">Play</button> ' +
          '<a class="btn small" target="_blank" rel="noopener">File</a></td>';
        tr.querySelector('a').href = rec.strPath.replace(/^\//, '') + '?session=' + encodeURIComponent(H5SS.session());
        tr.querySelector('button').addEventListener('click', function () {
          var from = start || r.begin;
          play(from, new Date(from.getTime() + 1000 * Number(rec.strDuration || 0)), rec.strPath);
        });
        tbody.appendChild(tr);
      });
      $('files').hidden = !rows.length;
      $('files-empty').hidden = !!rows.length;
    }).catch(function (e) { showBanner('Cannot list recordings: ' + e.message); });
  }

  $('logout').addEventListener('click', H5SS.logout);
  H5SS.startKeepalive();

  $('range').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var r = range();
    play(r.begin, r.end);
  });
  $('list').addEventListener('click', list);
  ['camera', 'day', 'from', 'to'].forEach(function (id) { $(id).addEventListener('change', updateDownload); });

  $('pause').addEventListener('click', function () {
    if (!player) return;
    if ($('pause').textContent === 'Pause') { player.pause(); $('pause').textContent = 'Resume'; }
    else { player.resume(); $('pause').textContent = 'Pause'; }
  });
  $('seek').addEventListener('input', function () { dragging = true; });
  $('seek').addEventListener('change', function () {
    dragging = false;
    if (player) player.seek(Number($('seek').value));
  });
  $('speed').addEventListener('change', function () { if (player) player.speed(Number($('speed').value)); });
  $('mute').addEventListener('click', function () {
    video.muted = !video.muted;
    if (!video.muted) video.play().catch(function () {});
    $('mute').textContent = video.muted ? 'Unmute' : 'Mute';
  });

  setInterval(function () {
    if (!player) return;
    var s = player.stats(), pos = s.position;
    if (pos !== null && pos !== undefined && !dragging) $('seek').value = String(Math.max(0, Math.floor(pos)));
    $('clock').textContent = pos === null || pos === undefined ? '–' : clockText(new Date(playingFrom + 1000 * Math.max(0, pos)));
    $('state').textContent = s.state + (s.lastError && s.state !== 'playing' ? ': ' + s.lastError : '');
  }, 250);

  // The form: deep-link values, else today; then the cameras.
  var now = new Date();
  $('day').value = H5SS.param('day') || (now.getFullYear() + '-' + pad(now.getMonth() + 1) + '-' + pad(now.getDate()));
  if (H5SS.param('from')) $('from').value = H5SS.param('from');
  if (H5SS.param('to')) $('to').value = H5SS.param('to');
  H5SS.api('GetSrc').then(function (ans) {
    var want = H5SS.param('token');
    (ans.src || []).forEach(function (src) {
      var opt = document.createElement('option');
      opt.value = src.strToken;
      opt.textContent = (src.strName || src.strToken) + ' (' + src.strToken + ')';
      $('camera').appendChild(opt);
    });
    if (want) {
      if (![].some.call($('camera').options, function (o) { return o.value === want; })) {
        var opt = document.createElement('option');  // recordings of a deleted source
        opt.value = opt.textContent = want;
        $('camera').appendChild(opt);
      }
      $('camera').value = want;
    }
    updateDownload();
    if (H5SS.param('autoplay') === '1') $('play').click();
  }).catch(function (e) { showBanner('Cannot read the cameras: ' + e.message); });

  window.addEventListener('pagehide', stop);
})();
