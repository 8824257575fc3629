using MimeKit;

namespace Subscriptions.Tests.Infrastructure;

/// <summary>A minimal email, for tests of the sending side rather than of what is sent.</summary>
public static class PlainMessages
{
    public static MimeMessage To(string to, string subject)
    {
        var message = new MimeMessage { Subject = subject, Body = new TextPart("plain") { Text = subject } };
        message.From.Add(MailboxAddress.Parse("papers@subscriptions.test"));
        message.To.Add(MailboxAddress.Parse(to));
        return message;
    }
}
