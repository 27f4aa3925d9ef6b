// Language switcher: submit the form when a language is picked (an inline onchange handler
// would be blocked by the Content-Security-Policy, which allows scripts from this origin only).
document.addEventListener("change", function (event) {
  if (event.target.matches("select[data-autosubmit]")) {
    event.target.form.submit();
  }
});
