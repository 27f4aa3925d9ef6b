// Language switcher: submit the form when a language is picked (an inline onchange handler
// would be blocked by the Content-Security-Policy, which allows scripts from this origin only).
// The page may have changed its address since it loaded (htmx searches and week links), so the
// form returns to where the person is now, not where the page started.
document.addEventListener("change", function (event) {
  if (event.target.matches("select[data-autosubmit]")) {
    var next = event.target.form.querySelector("input[name=next]");
    if (next) {
      next.value = window.location.pathname + window.location.search;
    }
    event.target.form.submit();
  }
});
