// ServerSage web UI: the little that needs script beyond htmx. Served by the hub itself (the
// Content-Security-Policy refuses inline script).
"use strict";

// Filter selects apply at once, as people expect of a filter bar; the form still works without
// script through its button.
document.addEventListener("change", function (ev) {
  var el = ev.target;
  if (el && el.matches && el.matches("select[data-autosubmit]") && el.form) {
    el.form.requestSubmit();
  }
});

// Live blocks poll every scrape interval; a tab nobody looks at need not. The first poll after
// the tab shows again brings the block up to date.
document.addEventListener("htmx:beforeRequest", function (ev) {
  var elt = ev.detail && ev.detail.elt;
  var trig = elt && elt.getAttribute && elt.getAttribute("hx-trigger");
  if (document.hidden && trig && trig.indexOf("every ") === 0) {
    ev.preventDefault();
  }
});
