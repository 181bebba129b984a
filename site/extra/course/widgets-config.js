// Loaded between require.js and the widget manager (nb_ipywidgets_js in _config.yml).
// The manager finds its fonts relative to the URL that require.js gives its own modules; by
// default that is the page's folder. Point its modules at the copy this site serves, wherever
// the site is hosted.
(function () {
  var here = document.currentScript.src;
  var manager = new URL("../vendor/html-manager", here).href;
  require.config({
    paths: {
      "@jupyter-widgets/html-manager": manager,
      "@jupyter-widgets/html-manager/dist": manager,
      "@jupyter-widgets/base": manager + "/base",
      "@jupyter-widgets/controls": manager + "/controls",
    },
  });
})();

// The widget controls typeset their labels with MathJax 2's API (MathJax.Hub.Queue); the book
// loads MathJax 3. Give them a MathJax.Hub that forwards to MathJax 3's typesetPromise.
(function () {
  function shim() {
    if (window.MathJax && !window.MathJax.Hub) {
      window.MathJax.Hub = {
        Queue: function (job) {
          var element = Array.isArray(job) ? job[2] : undefined;
          if (element && window.MathJax.typesetPromise) {
            window.MathJax.typesetPromise([element]).catch(function () {});
          }
        },
      };
    }
  }
  // MathJax 3 replaces window.MathJax when it starts up, so re-apply until it has.
  var tries = 0;
  var timer = setInterval(function () {
    shim();
    if ((window.MathJax && window.MathJax.typesetPromise) || ++tries > 300) clearInterval(timer);
  }, 50);
  shim();
})();
