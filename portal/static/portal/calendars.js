// Calendar subscription address: a "copy" button (shown only where the clipboard API exists;
// without it the read-only field can still be selected and copied by hand).
(function () {
  function status(text) {
    var box = document.getElementById("copy-status");
    if (box) {
      box.textContent = text;
    }
  }
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    if (!(navigator.clipboard && window.isSecureContext)) {
      return;
    }
    button.hidden = false;
    button.addEventListener("click", function () {
      var field = document.getElementById(button.dataset.copy);
      field.select();
      navigator.clipboard.writeText(field.value).then(
        function () { status(button.dataset.copied); },
        function () { status(button.dataset.copyFailed); }
      );
    });
  });
  document.querySelectorAll("input.secret[readonly]").forEach(function (field) {
    field.addEventListener("focus", function () { field.select(); });
  });
})();
