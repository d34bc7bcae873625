/*
 * ptz.js — PTZ controls on the player page for ONVIF sources (GetSrc nType H5_ONVIF).
 *
 * Hold an arrow or a zoom button to move (Ptz action=… speed=…), let go to stop.
 * Commands go out one after another, so a Stop can never overtake the move it ends.
 * Shown to Operators and Administrators only; the server refuses Viewers anyway.
 */
(function (global) {
  'use strict';

  var attached = false;

  function attach(token, src) {
    if (attached || src.nType !== 'H5_ONVIF') return;
    var role = H5SS.userType();
    if (role && !/^(admin|operator)/i.test(role)) return;
    attached = true;

    var panel = document.getElementById('ptz');
    var speed = document.getElementById('ptz-speed');
    var presets = document.getElementById('ptz-presets');
    var nameInput = document.getElementById('ptz-name');
    var status = document.getElementById('ptz-status');
    var queue = Promise.resolve();
    var moving = false;
    panel.hidden = false;

    function say(text) { status.textContent = text || ''; }

    // Run API calls strictly in order; each failure is shown, the queue goes on.
    function send(command, params) {
      var call = queue.then(function () {
        return H5SS.api(command, Object.assign({ token: token }, params));
      });
      queue = call.then(function () { say(''); }, function (e) { say(e.message); });
      return call;
    }

    function start(action) {
      if (action === 'stop') {
        moving = false;
        send('Ptz', { action: 'stop' });
        return;
      }
      moving = true;
      send('Ptz', { action: action, speed: speed.value });
    }

    function end() {
      if (!moving) return;
      moving = false;
      send('Ptz', { action: 'stop' });
    }

    Array.prototype.forEach.call(panel.querySelectorAll('[data-ptz]'), function (btn) {
      var action = btn.getAttribute('data-ptz');
      btn.addEventListener('pointerdown', function (ev) {
        btn.setPointerCapture(ev.pointerId);
        start(action);
      });
      ['pointerup', 'pointercancel', 'lostpointercapture'].forEach(function (type) {
        btn.addEventListener(type, end);
      });
      btn.addEventListener('keydown', function (ev) {
        if ((ev.key === 'Enter' || ev.key === ' ') && !ev.repeat) start(action);
      });
      btn.addEventListener('keyup', function (ev) {
        if (ev.key === 'Enter' || ev.key === ' ') end();
      });
    });
    global.addEventListener('blur', end);

    function loadPresets(select) {
      return send('GetPresets', {}).then(function (r) {
        presets.innerHTML = (r.preset || []).map(function (p) {
          return '<option value="' + H5SS.esc(p.strToken) + '">' + H5SS.esc(p.strName || p.strToken) + '</option>';
        }).join('');
        if (select) presets.value = select;
      }, function () {});
    }

    document.getElementById('ptz-goto').addEventListener('click', function () {
      if (presets.value) send('Ptz', { action: 'preset', preset: presets.value });
    });
    document.getElementById('ptz-delete').addEventListener('click', function () {
      if (!presets.value) return;
      send('DelPreset', { presettoken: presets.value }).then(function () { loadPresets(); }, function () {});
    });
    document.getElementById('ptz-save').addEventListener('click', function () {
      var name = nameInput.value.trim();
      if (!name) { say('Give the preset a name first.'); return; }
      send('SetPreset', { presetname: name }).then(function (r) {
        nameInput.value = '';
        loadPresets(r.strPresetToken);
      }, function () {});
    });

    loadPresets();
  }

  global.H5ssPtz = { attach: attach };
})(window);
