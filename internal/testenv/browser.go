package testenv

import (
	"github.com/chromedp/chromedp"
)

// BrowserOptions start headless Chromium as this machine needs it: no sandbox (the
// tests may run as root), no GPU, and none of the background traffic (QUIC,
// component updates) a closed network refuses, with its own profile in profileDir.
func BrowserOptions(chromium, profileDir string) []chromedp.ExecAllocatorOption {
	return append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.Flag("disable-quic", true), chromedp.Flag("disable-component-update", true),
		chromedp.UserDataDir(profileDir))
}

// SignInSteps open authorizeURL and sign in at the upstream provider's own login
// form (StartOIDCProvider's), as a person would, until the consent page shows.
func SignInSteps(authorizeURL, username, password string) chromedp.Action[chromedp.Void] {
	return chromedp.Steps(
		chromedp.Navigate(authorizeURL),
		chromedp.WaitVisible(chromedp.CSS(`#username`)),
		chromedp.SendKeys(chromedp.CSS(`#username`), username),
		chromedp.SendKeys(chromedp.CSS(`#password`), password),
		chromedp.Click(chromedp.CSS(`button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`#workspace`)),
	)
}

// ApproveSteps pick workspace on the consent page and approve, then wait for the
// app's page to show an element with id done.
func ApproveSteps(workspace string) chromedp.Action[chromedp.Void] {
	return chromedp.Steps(
		chromedp.SetValue(chromedp.CSS(`#workspace`), workspace),
		chromedp.Click(chromedp.CSS(`button[value=approve]`)),
		chromedp.WaitVisible(chromedp.CSS(`#done`)),
	)
}
