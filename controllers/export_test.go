package controllers

// UnpackDigests is unpackDigests, for the specs that read the manager's cache.
var UnpackDigests = unpackDigests
