// Typeset the formulas of pymdownx.arithmatex (generic mode: \( ... \) in span.arithmatex, \[ ... \] in
// div.arithmatex) with the vendored KaTeX (javascripts/vendor/katex): no CDN, so math renders offline.
// Material's document$ fires on the first load and after each instant navigation.
(function () {
  function typeset(root) {
    root.querySelectorAll(".arithmatex").forEach(function (el) {
      if (el.querySelector(".katex")) return;
      var tex = el.textContent.trim();
      var display = el.tagName === "DIV";
      if (/^\\[\(\[]/.test(tex) && /\\[\)\]]$/.test(tex)) tex = tex.slice(2, -2);
      katex.render(tex, el, { displayMode: display, throwOnError: false });
    });
  }
  if (window.document$) {
    window.document$.subscribe(function () { typeset(document.body); });
  } else {
    document.addEventListener("DOMContentLoaded", function () { typeset(document.body); });
  }
})();
