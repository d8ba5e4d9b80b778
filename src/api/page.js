// Replaces <main> with a fresh copy every 15 s: no reload, no flicker, no other origin.
(function () {
  function refresh() {
    fetch('/ui', { credentials: 'same-origin', cache: 'no-store' })
      .then(function (r) {
        if (r.status === 401 || r.status === 403) { location.reload(); return null; }
        return r.ok ? r.text() : null;
      })
      .then(function (text) {
        if (!text) { return; }
        var doc = new DOMParser().parseFromString(text, 'text/html');
        var fresh = doc.querySelector('main');
        var stamp = doc.getElementById('generated');
        if (fresh) { document.querySelector('main').replaceWith(fresh); }
        if (stamp) { document.getElementById('generated').textContent = stamp.textContent; }
        // How many refreshes landed: the browser test waits for one.
        document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || 0) + 1);
      })
      .catch(function () { /* offline for a moment: try again next time */ });
  }
  setInterval(refresh, 15000);
})();
