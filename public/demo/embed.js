// The demo's stand-in for a site's embed code. A real site pastes
//   <script src="https://YOUR-PARLEY-HOST/widget.js" data-site="pk_…" async></script>
// with its own site key; this demo does not know the key in advance, so it takes it from its
// own URL (?site=pk_…, printed by `npm start`), remembers it for this tab, and adds the very
// same tag. Links between the demo pages keep the key; ?theme=light|dark|auto becomes the tag's
// data-theme, to try the embed option.
(function () {
  var params = new URLSearchParams(location.search);
  var key = params.get('site') || sessionStorage.getItem('parley-demo-site');
  if (!key) {
    var n = document.getElementById('no-key');
    if (n) n.hidden = false;
    return;
  }
  sessionStorage.setItem('parley-demo-site', key);
  document.querySelectorAll('a[data-keep]').forEach(function (a) {
    var u = new URL(a.href);
    u.searchParams.set('site', key);
    a.href = u.href;
  });
  // Buttons on the page can open the chat through the JS API, even before the widget loaded.
  window.Parley = window.Parley || function () { (window.Parley.q = window.Parley.q || []).push(arguments); };
  document.querySelectorAll('[data-chat]').forEach(function (b) {
    b.addEventListener('click', function (e) { e.preventDefault(); window.Parley('open'); });
  });
  var s = document.createElement('script');
  s.src = '/widget.js';
  s.async = true;
  s.setAttribute('data-site', key);
  var theme = params.get('theme');
  if (theme) s.setAttribute('data-theme', theme);
  document.head.appendChild(s);
})();
