"""A real RTSP server for the agent's camera tests: GStreamer's rtsp-server.

Serves an H.264 test pattern (SMPTE 75 % bars, so a frame's layout can be checked
after scaling) on 127.0.0.1. Prints `ready <port>` once listening and
`size <w> <h>` whenever the stream's resolution changes; exits when its
stdin closes, so a crashed test run leaves no server behind.

Usage: rtsp-server.py --port N [--mount /cam] [--user U --password-file F]
                      [--size WxH] [--flip-size WxH --flip-ms MS] [--fps N]
"""
import argparse
import sys

try:
    import gi
    gi.require_version('Gst', '1.0')
    gi.require_version('GstRtspServer', '1.0')
    from gi.repository import GLib, Gst, GstRtspServer
except (ImportError, ValueError) as err:
    print('missing GStreamer RTSP server: %s' % err, file=sys.stderr, flush=True)
    sys.exit(3)


def parse_size(text):
    w, h = text.lower().split('x')
    return int(w), int(h)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--port', type=int, default=0)
    ap.add_argument('--mount', default='/cam')
    ap.add_argument('--user')
    ap.add_argument('--password-file')
    ap.add_argument('--size', default='320x240', type=parse_size)
    ap.add_argument('--flip-size', type=parse_size)
    ap.add_argument('--flip-ms', type=int, default=2000)
    ap.add_argument('--fps', type=int, default=10)
    args = ap.parse_args()

    Gst.init(None)
    for element in ('videotestsrc', 'x264enc', 'rtph264pay', 'videoscale'):
        if Gst.ElementFactory.find(element) is None:
            print('missing GStreamer element %s' % element, file=sys.stderr, flush=True)
            sys.exit(3)

    server = GstRtspServer.RTSPServer()
    server.set_address('127.0.0.1')
    server.set_service(str(args.port))

    w, h = args.size
    factory = GstRtspServer.RTSPMediaFactory()
    # key-int-max: a joining client waits at most one second for a key frame;
    # config-interval=-1 repeats SPS/PPS with every key frame, so a new size reaches the client.
    factory.set_launch(
        '( videotestsrc is-live=true pattern=smpte75 ! videoscale '
        '! capsfilter name=size caps=video/x-raw,width=%d,height=%d '
        '! videoconvert ! video/x-raw,format=I420,framerate=%d/1 '
        '! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=%d '
        '! rtph264pay name=pay0 pt=96 config-interval=-1 )' % (w, h, args.fps, args.fps)
    )
    # A pipeline per client, not one shared: gst-rtsp-server aborts (an assertion in
    # gst_rtsp_media_get_rates) when two clients join one shared media at the same instant.
    factory.set_shared(False)

    if args.flip_size is not None:
        sizes = [args.size, args.flip_size]

        def configure(_factory, media):
            capsfilter = media.get_element().get_by_name('size')
            state = {'i': 0}

            def flip():
                state['i'] += 1
                fw, fh = sizes[state['i'] % 2]
                capsfilter.set_property('caps', Gst.Caps.from_string('video/x-raw,width=%d,height=%d' % (fw, fh)))
                print('size %d %d' % (fw, fh), flush=True)
                return True

            GLib.timeout_add(args.flip_ms, flip)

        factory.connect('media-configure', configure)

    if args.user is not None:
        with open(args.password_file, encoding='utf-8') as f:
            password = f.read().rstrip('\n')
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string('media.factory.role', 'viewer')
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, password), token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_role('viewer')
        permissions.add_permission_for_role('viewer', 'media.factory.access', True)
        permissions.add_permission_for_role('viewer', 'media.factory.construct', True)
        factory.set_permissions(permissions)

    server.get_mount_points().add_factory(args.mount, factory)
    if server.attach(None) == 0:
        print('cannot listen on 127.0.0.1:%d' % args.port, file=sys.stderr, flush=True)
        sys.exit(4)

    loop = GLib.MainLoop()

    def on_stdin(_source, _condition):
        # EOF (or an error) on stdin: the test process is gone.
        if not sys.stdin.buffer.read1(4096):
            loop.quit()
            return False
        return True

    GLib.io_add_watch(sys.stdin.buffer, GLib.IO_IN | GLib.IO_HUP | GLib.IO_ERR, on_stdin)
    print('ready %d' % server.get_bound_port(), flush=True)
    loop.run()


if __name__ == '__main__':
    main()
