/*
 * h5ss.js — small helpers shared by the h5ss pages (login, index, player):
 * the session in localStorage, calls to the /api/v1 REST API, the 30 s
 * Keepalive, and redirecting to the login page when the session is gone.
 *
 * URLs are relative (api/v1/...), so the pages keep working when the gateway
 * is mounted under a sub path.
 */
(function (global) {
  'use strict';

  var KEY_SESSION = 'h5ss.session';
  var KEY_USER = 'h5ss.user';
  var KEY_USERTYPE = 'h5ss.usertype';

  function store(k, v) {
    try {
      if (v === null || v === undefined || v === '') localStorage.removeItem(k);
      else localStorage.setItem(k, v);
    } catch (e) { /* storage disabled: the session just won't persist */ }
  }

  function load(k) {
    try { return localStorage.getItem(k) || ''; } catch (e) { return ''; }
  }

  function ApiError(message, status, body) {
    this.name = 'ApiError';
    this.message = message;
    this.status = status;
    this.body = body;
  }
  ApiError.prototype = Object.create(Error.prototype);

  var H5SS = {
    ApiError: ApiError,

    session: function () { return load(KEY_SESSION); },
    user: function () { return load(KEY_USER); },
    // '' when the server did not say (then the admin UI is shown and the
    // server's own permission check decides).
    userType: function () { return load(KEY_USERTYPE); },
    isAdmin: function () {
      var t = load(KEY_USERTYPE);
      return !t || /^admin/i.test(t);
    },

    setSession: function (session, user, userType) {
      store(KEY_SESSION, session);
      store(KEY_USER, user);
      store(KEY_USERTYPE, userType);
    },

    clearSession: function () {
      store(KEY_SESSION, '');
      store(KEY_USERTYPE, '');
    },

    // Directory the pages are served from: the rootpath for the player.
    rootpath: function () {
      return global.location.pathname.replace(/[^/]*$/, '') || '/';
    },

    // Go to the login page, remembering where we were.
    goLogin: function (reason) {
      var here = global.location.pathname.replace(/^.*\//, '') + global.location.search;
      var q = new URLSearchParams();
      if (here && !/^login\.html/.test(here)) q.set('next', here);
      if (reason) q.set('why', reason);
      var qs = q.toString();
      global.location.replace('login.html' + (qs ? '?' + qs : ''));
    },

    // A JSON answer (or HTTP status) that means "log in again".
    isSessionError: function (status, body) {
      if (status === 401) return true;
      return !!(body && body.bStatus === false && /session/i.test(body.strCode || ''));
    },

    /*
     * GET api/v1/<name>?params (+ session unless opts.noSession).
     * Resolves with the JSON body. Rejects with ApiError(strCode) when the
     * server says bStatus:false; on an invalid session it first clears the
     * session and redirects to login (unless opts.noRedirect).
     */
    api: function (name, params, opts) {
      opts = opts || {};
      var q = new URLSearchParams();
      Object.keys(params || {}).forEach(function (k) {
        if (params[k] !== undefined && params[k] !== null) q.set(k, params[k]);
      });
      if (!opts.noSession) q.set('session', H5SS.session());
      var url = 'api/v1/' + name + '?' + q.toString();
      return fetch(url, { cache: 'no-store', credentials: 'same-origin' }).then(function (resp) {
        return resp.text().then(function (text) {
          var body = null;
          try { body = text ? JSON.parse(text) : null; } catch (e) { /* not JSON */ }
          if (!opts.noSession && H5SS.isSessionError(resp.status, body)) {
            H5SS.clearSession();
            if (!opts.noRedirect) H5SS.goLogin((body && body.strCode) || 'session expired');
            throw new ApiError((body && body.strCode) || 'invalid session', resp.status, body);
          }
          if (body && body.bStatus === false) {
            throw new ApiError(body.strCode || 'request failed', resp.status, body);
          }
          if (!resp.ok) {
            throw new ApiError((body && body.strCode) || ('HTTP ' + resp.status), resp.status, body);
          }
          if (body === null) throw new ApiError('bad answer from server', resp.status, null);
          return body;
        });
      });
    },

    // Pages other than login call this first: no session → login page.
    requireSession: function () {
      if (!H5SS.session()) {
        H5SS.goLogin();
        return false;
      }
      return true;
    },

    // Sessions expire after nTimeout (600 s) without calls; 30 s is plenty.
    startKeepalive: function () {
      var t = setInterval(function () {
        H5SS.api('Keepalive').catch(function (e) {
          if (e instanceof ApiError && H5SS.isSessionError(e.status, e.body)) clearInterval(t);
        });
      }, 30000);
      return t;
    },

    logout: function () {
      var done = function () { H5SS.clearSession(); global.location.replace('login.html'); };
      H5SS.api('Logout', {}, { noRedirect: true }).then(done, done);
    },

    // Text into HTML safely (names and tokens come from the config).
    esc: function (s) {
      return String(s === undefined || s === null ? '' : s).replace(/[&<>"']/g, function (c) {
        return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c];
      });
    },

    param: function (name) {
      return new URLSearchParams(global.location.search).get(name);
    },

    fmtBytes: function (n) {
      if (n < 1024) return n + ' B';
      if (n < 1048576) return (n / 1024).toFixed(1) + ' KiB';
      if (n < 1073741824) return (n / 1048576).toFixed(1) + ' MiB';
      return (n / 1073741824).toFixed(2) + ' GiB';
    }
  };

  global.H5SS = H5SS;
})(window);
